"""The job manager: one retraining of a dataset at a time, however many requests ask for it at once."""

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
        started.append(jobs.submit_if_idle("train", "ann", {"dataset": "a"}, work, same=("dataset",)))

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [j.id for j in started if j is not None]
    assert len(ids) == 1, started
    assert jobs.active("train", dataset="a").id == ids[0] and not jobs.active("import")
    assert jobs.active("train", dataset="b") is None
    assert jobs.submit_if_idle("import", "ann", {}, lambda p: {}) is not None  # other kinds are not held back
    other = jobs.submit_if_idle("train", "ann", {"dataset": "b"}, lambda p: {}, same=("dataset",))
    assert other is not None  # another dataset's retraining queues behind it, not dropped
    release.set()
    assert jobs.wait(ids[0], 10).status == "done"
    assert jobs.wait(other.id, 10).status == "done" and not jobs.active("train")
    again = jobs.submit_if_idle("train", "ann", {"dataset": "a"}, lambda p: {"n": 2}, same=("dataset",))
    assert again is not None and jobs.wait(again.id, 10).result == {"n": 2}
    jobs.shutdown()
