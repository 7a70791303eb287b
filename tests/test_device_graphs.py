"""DeviceGraphs: which calls are executed, captured, replayed and released
(a stand-in model records what MAX would be asked; the real capture and
replay are checked on a GPU by the CUDA-array tests in test_api.py and
test_kept_taps.py)."""

from __future__ import annotations

from maxconv.device_graphs import DeviceGraphs


class Buffer:
    def __init__(self, address: int, shape: tuple[int, ...]) -> None:
        self.address, self.shape = address, shape

    def _data_ptr(self) -> int:
        return self.address


class Model:
    def __init__(self, capturable: bool = True) -> None:
        self.capturable = capturable
        self.calls: list[tuple] = []

    def _execute_device_tensors(self, buffers):
        self.calls.append(("execute", tuple(b.address for b in buffers)))

    def _capture(self, keys, buffers):
        if not self.capturable:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.calls.append(("capture", keys[0]))
        return []

    def _replay(self, keys, buffers):
        self.calls.append(("replay", keys[0]))

    def _release_captured_graph(self, keys):
        self.calls.append(("release", keys[0]))


def test_captured_the_second_time_then_replayed():
    graphs, model = DeviceGraphs(), Model()
    same = [Buffer(100, (1, 8)), Buffer(200, (1, 8))]
    for _ in range(4):
        graphs.run(model, same)
    assert [call[0] for call in model.calls] == ["execute", "capture", "replay", "replay", "replay"]
    model.calls.clear()
    graphs.run(model, [Buffer(100, (1, 8)), Buffer(300, (1, 8))])  # other memory
    graphs.run(model, [Buffer(100, (2, 4)), Buffer(200, (1, 8))])  # other shape
    graphs.run(model, [Buffer(100, (1, 8)), Buffer(200, (1, 8))])  # new objects, same memory
    assert [call[0] for call in model.calls] == ["execute", "execute", "replay"]


def test_a_model_that_cannot_be_captured_is_executed():
    graphs, model = DeviceGraphs(), Model(capturable=False)
    same = [Buffer(100, (1, 8))]
    for _ in range(3):
        graphs.run(model, same)
    assert [call[0] for call in model.calls] == ["execute", "execute", "execute"]


def test_the_oldest_graph_is_released_past_graphs_kept():
    graphs, model = DeviceGraphs(), Model()
    for address in range(DeviceGraphs.GRAPHS_KEPT + 2):
        for _ in range(2):
            graphs.run(model, [Buffer(address, (1, 8))])
    released = [call[1] for call in model.calls if call[0] == "release"]
    captured = [call[1] for call in model.calls if call[0] == "capture"]
    assert released == captured[:2]
    assert len(graphs._graphs) == DeviceGraphs.GRAPHS_KEPT
    model.calls.clear()
    graphs.run(model, [Buffer(0, (1, 8))])  # released: seen before, so captured again
    assert [call[0] for call in model.calls] == ["release", "capture", "replay"]


def test_graph_keys_are_unique_across_instances():
    """MAX keeps a model's graphs by key: two DeviceGraphs on one model never reuse one."""
    model = Model()
    first, second = DeviceGraphs(), DeviceGraphs()
    for graphs in (first, second):
        for _ in range(2):
            graphs.run(model, [Buffer(100, (1, 8))])
    captured = [call[1] for call in model.calls if call[0] == "capture"]
    assert len(captured) == 2 and captured[0] != captured[1]
