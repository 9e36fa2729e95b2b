"""REST routes of the emulated Discord: commands, messages, permissions, rate limits, faults, hygiene."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import discord
import pytest

from sandbox.discord_emulator import DiscordEmulator
from sandbox.discord_state import Perm
from tests.emulators.discord_helpers import World, make_world, raw_gateway, running

pytestmark = pytest.mark.timeout(60)


async def _rest(emu: DiscordEmulator, world: World, method: str, path: str, body: Any = None,
                token: str | None = None) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    headers = {"Authorization": f"Bot {token or world.app.token}"}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, emu.api_base + path, json=body, headers=headers) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None), resp.headers


def _cmd(name: str, description: str = "A command", **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": description, "type": 1, **extra}


async def test_json_content_type_is_exact() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        status, body, headers = await _rest(emu, world, "GET", "/users/@me")
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert body["id"] == str(world.app.user_id) and body["bot"] is True
        for key in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Reset-After",
                    "X-RateLimit-Bucket"):
            assert key in headers
        status, body, _ = await _rest(emu, world, "GET", "/oauth2/applications/@me")
        assert {"id", "name", "description", "icon", "bot_public", "bot_require_code_grant", "owner",
                "verify_key", "flags"} <= set(body)


async def test_unauthorized_and_unknown_route() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        status, body, _ = await _rest(emu, world, "GET", "/users/@me", token="not-a-token")
        assert (status, body) == (401, {"message": "401: Unauthorized", "code": 0})
        status, body, headers = await _rest(emu, world, "GET", "/guilds/1/bans/nope")
        assert (status, body) == (501, {"message": "sandbox: route not emulated", "code": 0})
        assert headers["Content-Type"] == "application/json"
        assert [tuple(u[:2]) for u in emu.unimplemented] == [("GET", "/guilds/1/bans/nope")]
        emu.unimplemented.clear()


async def test_bulk_overwrite_global_and_guild() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        app_id = world.app.application_id
        status, first, _ = await _rest(emu, world, "PUT", f"/applications/{app_id}/commands",
                                       [_cmd("play"), _cmd("skip")])
        assert status == 200 and [c["name"] for c in first] == ["play", "skip"]
        status, second, _ = await _rest(emu, world, "PUT", f"/applications/{app_id}/commands",
                                        [_cmd("play", "Changed"), _cmd("stop")])
        assert second[0]["id"] == first[0]["id"] and second[0]["version"] != first[0]["version"]
        assert second[1]["id"] != first[1]["id"]
        status, listed, _ = await _rest(emu, world, "GET", f"/applications/{app_id}/commands")
        assert [c["name"] for c in listed] == ["play", "stop"]
        guild_path = f"/applications/{app_id}/guilds/{world.guild.id}/commands"
        status, guild_cmds, _ = await _rest(emu, world, "PUT", guild_path, [_cmd("volume")])
        assert status == 200 and guild_cmds[0]["guild_id"] == str(world.guild.id)
        status, created, _ = await _rest(emu, world, "POST", guild_path, _cmd("pause"))
        assert status == 201
        status, _, _ = await _rest(emu, world, "DELETE", f"{guild_path}/{created['id']}")
        assert status == 204
        assert [c["name"] for c in emu.commands(world.app, world.guild.id)] == ["volume"]
        status, body, _ = await _rest(emu, world, "PUT", f"/applications/{app_id + 1}/commands", [])
        assert (status, body["code"]) == (403, 50001)


async def test_command_validation_is_50035() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        path = f"/applications/{world.app.application_id}/commands"
        status, body, _ = await _rest(emu, world, "PUT", path, [_cmd("Bad Name"), _cmd("ok", "")])
        assert status == 400 and body["code"] == 50035 and body["message"] == "Invalid Form Body"
        assert set(body["errors"]) == {"0", "1"}
        assert "name" in body["errors"]["0"] and "description" in body["errors"]["1"]
        status, body, _ = await _rest(emu, world, "PUT", path, [_cmd(f"c{i}") for i in range(101)])
        assert status == 400 and body["code"] == 50035
        assert emu.commands(world.app) == []


@pytest.mark.parametrize(("option", "field"), [
    ({"type": 12}, "type"),
    ({"type": 5, "choices": [{"name": "yes", "value": True}]}, "choices"),
    ({"type": 3, "choices": [{"name": f"c{i}", "value": f"c{i}"} for i in range(26)]}, "choices"),
    ({"type": 4, "choices": [{"name": "one", "value": "1"}]}, "choices"),
    ({"type": 3, "choices": [{"name": "a", "value": "a"}], "autocomplete": True}, "autocomplete"),
    ({"type": 3, "min_value": 1}, "min_value"),
    ({"type": 4, "min_value": 5, "max_value": 1}, "min_value"),
    ({"type": 3, "max_length": 6001}, "min_length"),
    ({"type": 4, "channel_types": [2]}, "channel_types"),
])
async def test_option_schemas_discord_rejects_are_50035(option, field) -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        path = f"/applications/{world.app.application_id}/commands"
        opt = {"name": "value", "description": "A value", **option}
        status, body, _ = await _rest(emu, world, "PUT", path, [_cmd("ok"), _cmd("set", options=[opt])])
        assert status == 400 and body["code"] == 50035
        assert list(body["errors"]) == ["1"] and field in body["errors"]["1"]["options"]["0"], body
        assert emu.commands(world.app) == []


async def test_sync_failure_surfaces_in_discord_py() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.3)
        tree = discord.app_commands.CommandTree(client)

        @tree.command(name="play", description="x" * 100)
        async def play(interaction: discord.Interaction) -> None:
            pass

        async with running(emu, world.app, client):
            assert [c.name for c in await tree.sync()] == ["play"]
            play.description = "x" * 101  # discord.py does not check; Discord does
            with pytest.raises(discord.app_commands.CommandSyncFailure):
                await tree.sync()


async def test_channel_messages_post_edit_delete() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        other = emu.add_bot("Listener")
        await emu.add_bot_to_guild(other, world.guild.id)
        async with running(emu, world.app) as client, running(emu, other) as listener:
            seen: list[str] = []

            async def on_message(message: discord.Message) -> None:
                seen.append(message.content)

            listener.event(on_message)
            channel = client.get_channel(world.text.id)
            message = await channel.send("hello")
            assert emu.messages(world.text.id)[0]["content"] == "hello"
            edited = await message.edit(content="hello again")
            assert edited.content == "hello again" and emu.message(message.id)["edited_timestamp"]
            fetched = await channel.fetch_message(message.id)
            assert fetched.content == "hello again"
            async with channel.typing():
                pass
            await message.delete()
            assert emu.messages(world.text.id) == []
            with pytest.raises(discord.NotFound):
                await channel.fetch_message(message.id)
            # The listener lacks MESSAGE_CONTENT: Discord blanks other bots' messages for it.
            await emu.wait_for(lambda: len(seen) == 1, 5)
            assert seen == [""]


async def test_missing_permissions_is_403() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        await emu.set_overwrite(world.text.id, world.guild.id, deny=Perm.SEND_MESSAGES)
        async with running(emu, world.app) as client:
            with pytest.raises(discord.Forbidden) as info:
                await client.get_channel(world.text.id).send("nope")
            assert info.value.code == 50013
        status, body, _ = await _rest(emu, world, "POST", "/channels/123/messages", {"content": "x"})
        assert (status, body["code"]) == (404, 10003)
        status, body, _ = await _rest(emu, world, "POST", f"/channels/{world.voice.id}/messages", {})
        assert (status, body["code"]) == (400, 50006)


async def test_injected_429_is_retried_by_discord_py() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        async with running(emu, world.app) as client:
            emu.inject_429("POST", r"/channels/\d+/messages", count=1, retry_after=0.2)
            started = time.monotonic()
            message = await client.get_channel(world.text.id).send("after a 429")
            assert time.monotonic() - started >= 0.2
        attempts = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/messages")]
        assert [r.status for r in attempts] == [429, 200]
        assert emu.message(message.id)["content"] == "after a 429"


async def test_injected_global_429_headers_and_retry() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        emu.inject_429("GET", r"^/channels/\d+$", count=1, retry_after=0.3, global_=True)
        status, body, headers = await _rest(emu, world, "GET", f"/channels/{world.text.id}")
        assert status == 429 and body == {"message": "You are being rate limited.", "retry_after": 0.3,
                                          "global": True, "code": 0}
        assert headers["X-RateLimit-Global"] == "true" and headers["X-RateLimit-Scope"] == "global"
        assert headers["Retry-After"] == "1" and headers["Via"] == "1.1 google"
        emu.inject_429("GET", r"^/channels/\d+$", count=1, retry_after=0.2, global_=True)
        async with running(emu, world.app) as client:
            channel = await client.fetch_channel(world.text.id)
            assert channel.id == world.text.id


async def test_bucket_exhaustion_gives_real_429() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        results = [await _rest(emu, world, "POST", f"/channels/{world.text.id}/messages", {"content": str(i)})
                   for i in range(6)]
        assert [r[0] for r in results] == [200] * 5 + [429]
        assert [r[2]["X-RateLimit-Remaining"] for r in results[:5]] == ["4", "3", "2", "1", "0"]
        status, body, headers = results[5]
        assert body["global"] is False and 0 < body["retry_after"] <= 5
        assert headers["X-RateLimit-Scope"] == "user" and headers["Via"]
        # Another channel is another bucket.
        status, _, _ = await _rest(emu, world, "POST", f"/channels/{world.voice.id}/messages", {"content": "x"})
        assert status == 200


async def test_injected_502_is_retried_and_latency_applies() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        emu.set_latency("GET", r"^/guilds/\d+$", 0.3)
        async with running(emu, world.app) as client:
            emu.inject_status("GET", r"^/guilds/\d+/channels$", status=502, count=1)
            channels = await client.get_guild(world.guild.id).fetch_channels()
            assert {c.id for c in channels} == {world.text.id, world.voice.id}
            started = time.monotonic()
            await client.fetch_guild(world.guild.id)
            assert time.monotonic() - started >= 0.3
        statuses = [r.status for r in emu.requests if r.path.endswith("/channels") and r.method == "GET"]
        assert statuses == [502, 200]


async def test_multipart_payload_json() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        async with running(emu, world.app) as client:
            file = discord.File(fp=__import__("io").BytesIO(b"data"), filename="a.txt")
            message = await client.get_channel(world.text.id).send("with file", file=file)
            assert emu.message(message.id)["content"] == "with file"


async def test_raw_callback_body_and_webhook_expiry() -> None:
    async with DiscordEmulator(interaction_token_ttl=0.3) as emu:
        world = await make_world(emu)
        await _rest(emu, world, "PUT", f"/applications/{world.app.application_id}/commands",
                    [_cmd("play", options=[{"type": 3, "name": "query", "description": "What", "required": True}])])
        async with raw_gateway(emu) as gw:
            await gw.identify(world.app.token)
            invoke = asyncio.create_task(emu.invoke(world.app, guild_id=world.guild.id, channel_id=world.text.id,
                                                    user_id=world.user.id, command="play", options={"query": "q"}))
            event = (await gw.recv_dispatch("INTERACTION_CREATE"))["d"]
            assert event["data"]["options"] == [{"name": "query", "type": 3, "value": "q"}]
            assert "guild_id" not in event["data"]  # not registered in this guild
            assert int(event["member"]["permissions"]) & Perm.SEND_MESSAGES
            base = emu.api_base
            async with aiohttp.ClientSession() as session:
                url = f"{base}/interactions/{event['id']}/{event['token']}/callback?with_response=1"
                async with session.post(url, json={"type": 4, "data": {"content": "hi"}}) as resp:
                    body = await resp.json()
                    assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
                assert body["interaction"]["id"] == event["id"]
                assert body["resource"]["type"] == 4 and body["resource"]["message"]["content"] == "hi"
                assert body["interaction"]["response_message_id"] == body["resource"]["message"]["id"]
                res = await invoke
                assert res.content == "hi" and res.message_id == int(body["resource"]["message"]["id"])
                hook = f"{base}/webhooks/{event['application_id']}/{event['token']}"
                async with session.post(hook + "?wait=1", json={"content": "more"}) as resp:
                    assert resp.status == 200
                async with session.get(hook + "/messages/@original") as resp:
                    assert (await resp.json())["content"] == "hi"
                await asyncio.sleep(0.35)
                async with session.post(hook + "?wait=1", json={"content": "too late"}) as resp:
                    assert resp.status == 401 and (await resp.json())["code"] == 50027
                async with session.post(f"{base}/webhooks/1/nope?wait=1", json={"content": "x"}) as resp:
                    assert resp.status == 404 and (await resp.json())["code"] == 10015


async def test_tokens_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        bad = "TUlTU0lORw.abcdef.this-token-is-not-registered-anywhere"
        async with running(emu, world.app) as client:
            await client.get_channel(world.text.id).send("hi")
        await _rest(emu, world, "GET", f"/channels/{world.text.id}/{world.app.token}")
        assert [u.path for u in emu.unimplemented] == [f"/channels/{world.text.id}/<token>"]
        emu.unimplemented.clear()
        await _rest(emu, world, "GET", "/users/@me", token=bad)
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(emu.gateway_url) as ws:
                await ws.receive()
                await ws.send_str(json.dumps({"op": 2, "d": {"token": bad, "intents": 1}}))
                await ws.receive()
    sandbox_lines = [r.getMessage() for r in caplog.records if r.name.startswith("sandbox")]
    assert sandbox_lines
    assert not [line for line in sandbox_lines if world.app.token in line or bad in line]
    assert any("<token>" in r.path for r in emu.requests)
    assert not any(world.app.token in r.path for r in emu.requests)


async def test_callback_is_204_without_with_response_and_200_with_it() -> None:
    async with DiscordEmulator() as emu:
        world = await make_world(emu)
        await _rest(emu, world, "PUT", f"/applications/{world.app.application_id}/commands", [_cmd("ping")])
        async with raw_gateway(emu) as gw, aiohttp.ClientSession() as session:
            await gw.identify(world.app.token)
            answers = []
            for query in ("", "?with_response=true"):
                invoke = asyncio.create_task(emu.invoke(world.app, guild_id=world.guild.id, channel_id=world.text.id,
                                                        user_id=world.user.id, command="ping"))
                event = (await gw.recv_dispatch("INTERACTION_CREATE"))["d"]
                url = f"{emu.api_base}/interactions/{event['id']}/{event['token']}/callback{query}"
                async with session.post(url, json={"type": 4, "data": {"content": "pong"}}) as resp:
                    answers.append((resp.status, await resp.read()))
                assert (await invoke).content == "pong"
        assert answers[0] == (204, b"")
        assert [r.callback_attempts for r in emu.interactions] == [[204], [200]]
        assert answers[1][0] == 200 and json.loads(answers[1][1])["resource"]["message"]["content"] == "pong"


async def test_unemulated_routes_are_501_recorded_and_fail_the_emulator(caplog: pytest.LogCaptureFixture) -> None:
    emu = DiscordEmulator()
    with pytest.raises(AssertionError, match=r"(?s)does not emulate.*DELETE /users/@me: sandbox: route \(only "
                                             r"other methods of this path are\) not emulated.*GET /guilds/1/bans"):
        async with emu:
            world = await make_world(emu)
            for method, path in (("DELETE", "/users/@me"), ("GET", "/guilds/1/bans/2")):
                status, body, headers = await _rest(emu, world, method, path)
                assert status == 501 and headers["Content-Type"] == "application/json"
                assert body["message"].startswith("sandbox: route") and body["code"] == 0
            async with running(emu, world.app) as client:
                with pytest.raises(discord.DiscordServerError) as info:  # 501 is not retried by discord.py
                    await client.http.request(discord.http.Route("GET", "/guilds/{guild_id}/bans",
                                                                 guild_id=world.guild.id))
                assert info.value.status == 501 and "sandbox: route not emulated" in str(info.value)
            assert [(u.method, u.path) for u in emu.unimplemented] == [
                ("DELETE", "/users/@me"), ("GET", "/guilds/1/bans/2"), ("GET", f"/guilds/{world.guild.id}/bans")]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("sandbox")]
    assert any("DELETE /users/@me -> 501" in w for w in warnings) and any("/guilds/1/bans/2 -> 501" in w
                                                                           for w in warnings)
