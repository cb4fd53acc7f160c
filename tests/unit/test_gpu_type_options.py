"""The GPU type of a spawn: offered by the partition's nodes, allowed by the image, at most what
one node has (a server runs on one node); refused before sbatch with the field and the limit."""

from __future__ import annotations

import dataclasses

import pytest

from carme_spawner.batch_script import render_batch_script
from carme_spawner.options import OptionsError, parse_options

from .samples import LIMITS
from .test_batch_script import SITE

# carme-n1: 4 x a100; carme-n2: 2 x a100 + 4 x 1g.10gb (both in both partitions)
CAPACITY = {"interactive": {"": 6, "1g.10gb": 4, "a100": 4}, "batch": {"": 6, "1g.10gb": 4, "a100": 4}}
TYPED = dataclasses.replace(LIMITS, max_gpus=8, gpu_capacity=CAPACITY, image_gpu_types={"torch": ("a100",)})


def error_for(raw, limits=TYPED) -> OptionsError:
    with pytest.raises(OptionsError) as info:
        parse_options(raw, limits)
    return info.value


def test_a_type_the_partition_has_is_asked_for_by_gres_type_and_count():
    request = parse_options({"gpus": 1, "gpu_type": "1g.10gb"}, TYPED)
    assert request.gpu_type == "1g.10gb"
    assert "#SBATCH --gres=gpu:1g.10gb:1\n" in render_batch_script(request, SITE)
    any_type = parse_options({"gpus": 2, "gpu_type": "any"}, TYPED)
    assert any_type.gpu_type == "" and "#SBATCH --gres=gpu:2\n" in render_batch_script(any_type, SITE)


def test_more_gpus_of_a_type_than_one_node_has_are_refused_naming_the_type_and_the_count():
    e = error_for({"gpus": 5, "gpu_type": "a100", "partition": "batch"})
    assert e.field == "gpus"
    assert e.message == ("at most 4 a100 GPUs fit on one node of partition batch, and a server runs on one "
                         "node (asked for 5)")
    assert "at most 6 GPUs fit on one node of partition batch" in str(error_for({"gpus": 7, "partition": "batch"}))


def test_a_type_the_partition_lacks_or_a_malformed_one_is_refused_naming_the_field():
    e = error_for({"gpus": 1, "gpu_type": "h100"})
    assert (e.field, e.message) == ("gpu_type", "no h100 GPUs on partition interactive (there: 1g.10gb, a100)")
    e = error_for({"gpus": 1, "gpu_type": "a100;rm -rf"})
    assert e.field == "gpu_type" and "must be a GPU type" in e.message
    e = error_for({"gpus": 0, "gpu_type": "a100"})
    assert (e.field, e.message) == ("gpu_type", "a GPU type needs at least 1 GPU (gpus is 0, type a100)")


def test_an_image_that_names_its_types_gets_the_one_it_can_run_on_and_refuses_others():
    assert parse_options({"image": "torch", "gpus": 1}, TYPED).gpu_type == "a100"
    e = error_for({"image": "torch", "gpus": 1, "gpu_type": "1g.10gb"})
    assert (e.field, e.message) == ("gpu_type", "image torch runs on a100 GPUs only (asked for 1g.10gb)")
    two = dataclasses.replace(TYPED, image_gpu_types={"torch": ("a100", "1g.10gb")})
    e = error_for({"image": "torch", "gpus": 1}, two)
    assert (e.field, e.message) == ("gpu_type", "image torch runs on a100, 1g.10gb GPUs only; choose one")


def test_without_a_view_of_the_nodes_slurm_decides():
    request = parse_options({"gpus": 1, "gpu_type": "h100"}, LIMITS)  # no capacity known
    assert request.gpu_type == "h100"
