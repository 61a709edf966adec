import asyncio
import time

from bench import common
from bench.common import *

with Bench("smoke") as b:
    b.valkey()
    sim = b.simulator(50)
    s = b.system(sim.url, V1_MAX_CONCURRENCY="100", QUEUE_LIMIT="1000000")
    t = time.time()
    s.start_gateway()
    print("gw", time.time() - t)
    t = time.time()
    s.start_worker(concurrency=50)
    print("worker", time.time() - t)

    async def main():
        async with api_client(s.url) as c:
            r = await common.submit_many(
                c, [{"message": f"hi [sim:tag=x{i}]", "estimated_seconds": 1} for i in range(20)]
            )
            ids = [x["task_id"] for x in r]
            print(r[0])
            ok, st = common.wait_all_terminal(s.redis_url, ids, 30, 0.1)
            print(ok, set(st.values()), time.time() - r[0]["t_send"])
            print(sim.requests("x1"))
            print(await common.fetch_tasks(c, ids[:1]))

    asyncio.run(main())
