"""The job manager: one retraining at a time, however many requests ask for it at once."""

import threading

from pixclass.server.jobs import JobManager


def test_submit_if_idle_starts_one_job_when_requests_race():
    jobs = JobManager()
    release = threading.Event()
    started, barrier = [], threading.Barrier(8)

    def work(progress):
        release.wait(10)
        return {"ok": True}

    def request():
        barrier.wait()
        started.append(jobs.submit_if_idle("train", "ann", {}, work))

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [j.id for j in started if j is not None]
    assert len(ids) == 1, started
    assert jobs.busy("train") and not jobs.busy("import")
    assert jobs.submit_if_idle("import", "ann", {}, lambda p: {}) is not None  # other kinds are not held back
    release.set()
    assert jobs.wait(ids[0], 10).status == "done"
    assert not jobs.busy("train")
    again = jobs.submit_if_idle("train", "ann", {}, lambda p: {"n": 2})
    assert again is not None and jobs.wait(again.id, 10).result == {"n": 2}
    jobs.shutdown()
