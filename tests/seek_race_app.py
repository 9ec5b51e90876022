"""A Faust worker that seeks back to its committed offset while a fetched batch is still being
handed to its agent, as a starting worker does after table recovery; run by
tests/test_faust_seek.py.

    python tests/seek_race_app.py BOOTSTRAP TOPIC OUT_FILE [--unpatched]

The topic's records (one partition) go to an agent that takes them slowly through a queue of
8, so the consumer is part-way through a batch. Once 20 are committed and 60 seen, the worker
does what Faust's recovery does at its end: seek to the committed offsets, resume the flow
(which empties the agents' queues), resume the consumer. When nothing new has been seen for
3 s, the offsets the agent processed go to OUT_FILE as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid


def main(bootstrap: str, topic_name: str, out: str, patched: bool) -> None:
    import faust

    from riskcockpit.streams import faust_seek

    if patched:
        faust_seek.install()
    app = faust.App(f"seek-race-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", store="memory://",
                    stream_buffer_maxsize=8, web_enabled=False, broker_commit_interval=3600)
    topic = app.topic(topic_name, partitions=1, key_serializer="raw", value_serializer="raw")
    seen: list[int] = []

    @app.agent(topic)
    async def slow(stream):
        async for events in stream.take_events(10, within=0.01):
            for event in events:
                seen.append(event.message.offset)
                await asyncio.sleep(0.005)

    @app.task
    async def seek_mid_batch():
        while len(seen) < 20:
            await asyncio.sleep(0.01)
        await app.consumer.commit()
        while len(seen) < 60:
            await asyncio.sleep(0.005)
        await app.consumer.perform_seek()
        app.flow_control.resume()
        app.consumer.resume_flow()
        count = -1
        while count != len(seen):
            count = len(seen)
            await asyncio.sleep(3)
        with open(out, "w") as f:
            json.dump(seen, f)
        os._exit(0)

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], patched="--unpatched" not in sys.argv[4:])
