"""A stand-in for prometheus_client that records nothing: the baseline bot of benchmarks/metrics.py (a bot as it
was before metrics) runs with this directory first on PYTHONPATH. Only what utils/metrics.py uses."""


class _Metric:
    def __init__(self, *args, **kwargs):
        pass

    def labels(self, *args, **kwargs):
        return self

    def inc(self, amount=1.0):
        pass

    def set(self, value):
        pass

    def set_function(self, function):
        pass

    def observe(self, value):
        pass


Counter = Gauge = Histogram = _Metric


def disable_created_metrics():
    pass
