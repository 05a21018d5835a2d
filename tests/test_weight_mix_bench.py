"""bench/weight_mix_bench.py: the weight mix is the base at share 0, the students' mean at share 1, and keeps the
base's integer buffers."""

import torch

from tests.conftest import load_bench


def test_mixed_state_interpolates_the_base_and_the_students_mean() -> None:
    mixed_state = load_bench("weight_mix_bench").mixed_state
    base = {"w": torch.zeros(2), "ids": torch.arange(3)}
    students = [
        {"w": torch.tensor([2.0, 4.0]), "ids": torch.arange(3) + 7},
        {"w": torch.tensor([4.0, 0.0]), "ids": torch.arange(3)},
    ]
    assert torch.equal(mixed_state(base, students, 0.0)["w"], base["w"])
    assert torch.equal(mixed_state(base, students, 1.0)["w"], torch.tensor([3.0, 2.0]))
    assert torch.allclose(mixed_state(base, students, 0.25)["w"], torch.tensor([0.75, 0.5]))
    assert torch.equal(mixed_state(base, students, 0.5)["ids"], base["ids"])
