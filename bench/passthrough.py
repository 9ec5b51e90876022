"""The baseline: a Faust agent that copies ``transactions`` to ``bench.passthrough`` unchanged.

Same broker, same Faust settings as the worker, no parsing, no state, no scoring: what one Faust
worker costs by itself.
"""

import os
import sys

import faust

from riskcockpit.streams import faust_seek

# Beside the worker's data in the bench's work folder, not in the current directory; Faust makes
# only the last level of it.
datadir = os.path.join(os.environ.get("RISKCOCKPIT_DATA_DIR", "."), "bench-passthrough")
os.makedirs(os.path.dirname(datadir), exist_ok=True)
app = faust.App("bench-passthrough", broker=f"kafka://{os.environ['RISKCOCKPIT_KAFKA']}", store="memory://",
                topic_partitions=int(os.environ.get("RISKCOCKPIT_KAFKA__PARTITIONS", "4")), web_enabled=False,
                producer_linger_ms=5, stream_buffer_maxsize=16384, datadir=datadir)
faust_seek.install()  # as the worker does, so both lose nothing at start
source = app.topic("transactions", key_serializer="raw", value_serializer="raw")
sink = app.topic("bench.passthrough", key_serializer="raw", value_serializer="raw")


@app.agent(source)
async def copy(stream):
    async for event in stream.events():
        await sink.send(key=event.message.key, value=event.message.value)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()
