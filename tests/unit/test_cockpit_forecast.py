"""The free-GPU forecast (carme_services.cockpit.forecast): running jobs until their end, reservations
in their window, drained nodes offering nothing, from the view's documents."""

from __future__ import annotations

from carme_services.cockpit.forecast import forecast

H = 3600
NOW = 1_800_000_000.0


def node(name, gpus, state="idle", flags=()):
    return {"name": name, "state": state, "flags": list(flags),
            "gpus": [{"type": t, "total": n, "allocated": 0} for t, n in gpus.items()]}


NODES = [node("carme-n1", {"a100": 4}), node("carme-n2", {"a100": 2, "1g.10gb": 4})]


def job(nodes, gpus, ends_in_h, detail=(), state="RUNNING"):
    return {"state": state, "nodes": nodes, "gpus": gpus, "start_time": NOW - H, "end_time": NOW + ends_in_h * H,
            "gres_detail": list(detail)}


def test_with_nothing_running_every_gpu_is_free_all_along():
    f = forecast(NODES, [], [], NOW, hours=3)
    assert f.free == {"1g.10gb": (4, 4, 4, 4), "a100": (6, 6, 6, 6)}
    assert f.times == (NOW, NOW + H, NOW + 2 * H, NOW + 3 * H)


def test_running_jobs_hold_their_typed_gpus_until_their_end():
    jobs = [job("carme-n1", 3, 2, ["gpu:a100:3(IDX:0-2)"]), job("carme-n2", 2, 1, ["gpu:1g.10gb:2(IDX:2-3)"]),
            job("carme-n2", 1, 5, state="PENDING")]  # pending: not placed
    f = forecast(NODES, jobs, [], NOW, hours=3)
    assert f.free["a100"] == (3, 3, 6, 6)  # the 3-GPU job ends in 2 h
    assert f.free["1g.10gb"] == (2, 4, 4, 4)
    assert f.first_free("a100", 5) == NOW + 2 * H
    assert f.first_free("a100", 7) is None


def test_a_job_without_gres_detail_holds_its_count_of_the_nodes_first_type():
    f = forecast(NODES, [job("carme-n2", 1, 10)], [], NOW, hours=1)
    assert f.free["a100"] == (5, 5)


def test_a_reservation_takes_its_nodes_gpus_in_its_window_only():
    maint = {"name": "maint", "nodes": "carme-n[1-2]", "start_time": NOW + 2 * H, "end_time": NOW + 3 * H, "tres": {}}
    course = {"name": "course", "nodes": "carme-n2", "start_time": NOW, "end_time": NOW + H, "tres": {"gres/gpu": 3}}
    f = forecast(NODES, [], [maint, course], NOW, hours=4)
    assert f.free["a100"] == (4, 6, 0, 6, 6)  # the course takes n2's 2 a100 first, then one slice
    assert f.free["1g.10gb"] == (3, 4, 0, 4, 4)


def test_a_drained_node_offers_nothing_but_a_reserved_one_is_up():
    nodes = [node("carme-n1", {"a100": 4}, state="drained", flags=("DRAIN",)),
             node("carme-n2", {"a100": 2, "1g.10gb": 4}, state="idle", flags=("RESERVED",))]
    f = forecast(nodes, [], [], NOW, hours=0)
    assert f.free == {"1g.10gb": (4,), "a100": (2,)} and f.usable == {"1g.10gb": 4, "a100": 2}


def test_the_forecast_chart_is_svg_without_script_with_a_line_per_type():
    from carme_services.cockpit.charts import forecast_chart

    svg = forecast_chart(forecast(NODES, [job("carme-n1", 3, 2, ["gpu:a100:3(IDX:0-2)"])], [], NOW, hours=6).to_dict())
    assert svg.startswith("<svg") and "<script" not in svg
    assert "a100" in svg and "1g.10gb" in svg and "Free GPUs ahead" in svg


def test_the_hubs_spawn_histogram_becomes_buckets_and_a_chart():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from carme_services.cockpit.charts import spawn_buckets, spawn_latency_chart

    registry = CollectorRegistry()
    steps = Histogram("carme_spawn_step_seconds", "as the spawner's", ["step"], buckets=(1, 5, 30),
                      registry=registry)
    for seconds in (0.5, 3, 4, 12, 90):
        steps.labels("proxy route added").observe(seconds)
    steps.labels("sbatch returned").observe(0.1)  # another step: not counted
    buckets = spawn_buckets(generate_latest(registry).decode())
    assert buckets == [("0-1 s", 1), ("1-5 s", 2), ("5-30 s", 1), ("> 30 s", 1)]
    assert spawn_buckets("") == []
    svg = spawn_latency_chart(buckets)
    assert "<script" not in svg and "Spawn to ready" in svg
