"""Tests for carme_spawner.options: the checks every spawn goes through."""

import dataclasses

import pytest

from carme_spawner.options import (
    OptionsError,
    PartitionPolicy,
    SpawnRequest,
    format_duration,
    format_runtime,
    options_from_form_data,
    parse_options,
    validate_image_reference,
    validate_limits,
)

from .samples import LIMITS


def error_for(raw, limits=LIMITS) -> OptionsError:
    with pytest.raises(OptionsError) as info:
        parse_options(raw, limits)
    return info.value


def test_defaults():
    request = parse_options({}, LIMITS)
    assert dataclasses.asdict(request) == dict(
        gpus=0, cpus=2, memory_mb=4000, partition="interactive", runtime_minutes=60, reservation=None,
        image_id="base", image="/opt/carme/images/base.sif",
        routing_reason="0 GPUs for 1 h fits the interactive limits (<= 2 GPUs, <= 8 h)", project=None,
        gpu_type="", scratch_gib=0, open_first="jupyterlab",
    )


def test_a_project_must_be_one_of_the_users():
    limits = dataclasses.replace(LIMITS, projects=("vision", "nlp"))
    assert parse_options({"project": "vision"}, limits).project == "vision"
    assert parse_options({"project": ""}, limits).project is None  # the user's own account
    assert str(error_for({"project": "other"}, limits)) == (
        "project: 'other' is not one of your projects (your projects: vision, nlp)")
    assert str(error_for({"project": "vision"}, LIMITS)) == (
        "project: 'vision' is not one of your projects (you are in no project)")
    assert error_for({"project": ["vision"]}, limits).field == "project"


def test_without_options_an_image_that_needs_a_gpu_gets_one():
    """Defaults agree: the default image needs a GPU, so a start with no options asks for one."""
    limits = dataclasses.replace(LIMITS, image_gpu={"base": "required"})
    request = parse_options({}, limits)
    assert (request.image_id, request.gpus) == ("base", 1)
    assert parse_options({"gpus": 2}, limits).gpus == 2
    assert error_for({"gpus": 0}, limits).field == "gpus"


def test_only_parse_options_makes_a_request():
    """The type is the proof: a request cannot be made, or changed, by hand."""
    with pytest.raises(TypeError, match="parse_options only"):
        SpawnRequest(gpus=0, cpus=1, memory_mb=1, partition="x", runtime_minutes=1, reservation=None,
                     image_id="base", image="/opt/carme/images/base.sif", routing_reason="")
    with pytest.raises(TypeError, match="parse_options only"):
        dataclasses.replace(parse_options({}, LIMITS), partition="batch --uid=0")


def test_none_and_empty_values_mean_default():
    raw = {"gpus": None, "runtime": "", "partition": None, "reservation": "", "image": None}
    assert parse_options(raw, LIMITS) == parse_options({}, LIMITS)


def test_resources_scale_with_gpus():
    request = parse_options({"gpus": 3}, LIMITS)
    assert (request.gpus, request.cpus, request.memory_mb) == (3, 12, 48000)


@pytest.mark.parametrize("value", [2, "2", " 2 ", "002"])
def test_gpus_accepts_ints_and_digit_strings(value):
    assert parse_options({"gpus": value}, LIMITS).gpus == 2


@pytest.mark.parametrize("value", [True, False, 1.0, "1.0", "-1", "+1", "0x1", "1e1", "0001", [1], {"n": 1}])
def test_gpus_rejects_other_types_and_forms(value):
    error = error_for({"gpus": value})
    assert error.field == "gpus"
    assert str(error).startswith("gpus: must be")


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"gpus": -1}, "gpus: must be 0 or more (got -1)"),
        ({"gpus": "9"}, "gpus: 9 is above your limit of 4"),
        ({"gpus": 3, "partition": "interactive"}, "gpus: at most 2 on partition interactive (asked for 3)"),
        ({"gpus": 10**5000}, "gpus: a very large number is above your limit of 4"),
        ({"runtime": "8-00:00"}, "runtime: 8 days is above your limit of 7 days"),
        ({"runtime": 10**5000}, "runtime: a very long runtime is above your limit of 7 days"),
        ({"runtime": "9:00", "partition": "interactive"},
         "runtime: at most 8 h on partition interactive (asked for 9 h)"),
        ({"partition": "x"}, "partition: unknown partition 'x'; choose one of interactive, batch"),
        ({"image": "x"}, "image: 'x' is not an image available to you; choose one of: base, torch"),
    ],
)
def test_messages_name_the_field_and_the_limit(raw, message):
    error = error_for(raw)
    assert str(error) == message
    assert error.field == message.split(":")[0]


@pytest.mark.parametrize(
    "value, minutes",
    [(90, 90), ("90", 90), ("1:30", 90), ("01:30", 90), ("1:30:00", 90), (" 45 ", 45), ("0:00:30", 1),
     ("1:29:01", 90), ("1-00", 24 * 60), ("1-2", 26 * 60), ("1-02:30", 26 * 60 + 30)],  # seconds round up
)
def test_runtime_forms(value, minutes):
    assert parse_options({"runtime": value, "partition": "batch"}, LIMITS).runtime_minutes == minutes


@pytest.mark.parametrize(
    "value", ["1h", "1:5", "1:60", "1-24", "1-02:30:00", "1:2:3", "-5", 1.5, True, [60], "1" * 17, "\n"]
)
def test_runtime_rejects_other_forms(value):
    error = error_for({"runtime": value})
    assert error.field == "runtime"
    assert str(error).startswith("runtime: use minutes or H:MM, D-HH:MM (got ")


def test_runtime_message_truncates_and_escapes():
    message = str(error_for({"runtime": "x\n" * 100}))
    assert "\n" not in message
    assert message == "runtime: use minutes or H:MM, D-HH:MM (got " + repr("x\n" * 20)[:-1] + "...')"


@pytest.mark.parametrize("value", [0, "0", "0:00", -3])
def test_runtime_must_be_positive(value):
    assert str(error_for({"runtime": value})).startswith("runtime: must be at least 1 minute")


def test_routing_small_request_goes_to_interactive():
    request = parse_options({"gpus": 1, "runtime": 60}, LIMITS)
    assert request.partition == "interactive"
    assert request.routing_reason == "1 GPU for 1 h fits the interactive limits (<= 2 GPUs, <= 8 h)"


@pytest.mark.parametrize("raw", [{"gpus": 3}, {"runtime": "8:01"}, {"gpus": 4, "runtime": "2-00"}])
def test_routing_large_request_goes_to_batch(raw):
    request = parse_options(raw, LIMITS)
    assert request.partition == "batch"
    assert "exceeds the interactive limits (<= 2 GPUs, <= 8 h)" in request.routing_reason


def test_routing_reason_words():
    request = parse_options({"gpus": 3, "runtime": "1:30"}, LIMITS)
    expected = "3 GPUs for 1 h 30 min exceeds the interactive limits (<= 2 GPUs, <= 8 h)"
    assert request.routing_reason == expected


def test_explicit_partition():
    request = parse_options({"partition": "batch"}, LIMITS)
    assert (request.partition, request.routing_reason) == ("batch", "requested explicitly")


@pytest.mark.parametrize("value", ["x", "Batch", " batch", 1, ["batch"]])
def test_unknown_partition(value):
    error = error_for({"partition": value})
    assert error.field == "partition"
    assert str(error).endswith("; choose one of interactive, batch")


@pytest.mark.parametrize("value", ["maint", "R1", "a.b-c_d", "a" * 64])
def test_reservation_accepted(value):
    assert parse_options({"reservation": value}, LIMITS).reservation == value


@pytest.mark.parametrize("value", ["-x", ".x", "a b", "a" * 65, "a/b", 7, True])
def test_reservation_rejected(value):
    assert error_for({"reservation": value}).field == "reservation"


def test_image_choice():
    request = parse_options({"image": "torch"}, LIMITS)
    assert (request.image_id, request.image) == ("torch", "docker://nvcr.io/nvidia/torch:24.01-py3")


def test_a_shared_image_is_chosen_as_owner_slash_id():
    """Finding 3: the image option is a choice id; a shared image never goes by its bare id."""
    shared = "docker://nvcr.io/dave/torch:1"
    limits = validate_limits(dataclasses.replace(LIMITS, allowed_images={**LIMITS.allowed_images, "dave/torch": shared}))
    request = parse_options({"image": "dave/torch"}, limits)
    assert (request.image_id, request.image) == ("dave/torch", shared)
    assert parse_options({"image": "torch"}, limits).image == LIMITS.allowed_images["torch"]
    for bad in ("dave/torch\n", "dave/", "/torch", "Dave/torch", "a/b/torch", "dave/../torch"):
        assert error_for({"image": bad}, limits).field == "image", bad
    with pytest.raises(ValueError, match="<owner>/<id>"):
        validate_limits(dataclasses.replace(LIMITS, allowed_images={"a/b/c": "/x.sif"}))


@pytest.mark.parametrize("value", ["x", "Base", "/opt/carme/images/base.sif", 3, ["base"], "base\n", "x/base"])
def test_unknown_image(value):
    error = error_for({"image": value})
    assert error.field == "image"
    assert str(error).startswith("image: ") and "is not an image available to you; choose one of: base, torch" in str(error)


@pytest.mark.parametrize(
    "policy, gpus, words",
    [("required", 0, "needs at least 1 GPU"), ("none", 1, "cannot use GPUs")],
)
def test_image_gpu_policy(policy, gpus, words):
    limits = dataclasses.replace(LIMITS, image_gpu={"base": policy})
    with pytest.raises(OptionsError) as e:
        parse_options({"image": "base", "gpus": gpus}, limits)
    assert e.value.field == "gpus" and words in str(e.value)
    assert parse_options({"image": "base", "gpus": 1 - gpus}, limits).gpus == 1 - gpus


@pytest.mark.parametrize("key", ["cpus", "memory", "Gpus", "gpus ", ""])
def test_unknown_keys_rejected(key):
    error = error_for({key: "1"})
    assert error.field == key
    assert str(error) == f"{key}: unknown option; allowed: gpu_type, gpus, image, open_first, partition, project, reservation, runtime, scratch_gib"


@pytest.mark.parametrize("key", [1, None, ("gpus",), "x\ny"])
def test_strange_keys_rejected_without_echoing_them(key):
    error = error_for({key: "1"})
    assert "unknown option" in str(error)
    assert "\n" not in str(error)


def test_options_must_be_a_mapping():
    assert error_for(["gpus", 1]).field == "options"


def test_error_is_a_value_error_with_field_and_message():
    error = error_for({"gpus": 9})
    assert isinstance(error, ValueError)
    assert (error.field, error.message) == ("gpus", "9 is above your limit of 4")


def test_options_from_form_data():
    formdata = {"gpus": ["2", "3"], "runtime": [""], "partition": [" "], "reservation": [],
                "image": ["torch"], "evil": ["x"]}
    assert options_from_form_data(formdata) == {"gpus": "2", "image": "torch", "evil": ["x"]}


def test_form_data_round_trip():
    request = parse_options(options_from_form_data({"gpus": ["1"], "runtime": ["2:00"]}), LIMITS)
    assert (request.gpus, request.runtime_minutes, request.partition) == (1, 120, "interactive")


def test_form_data_unknown_key_is_rejected_by_parse_options():
    assert error_for(options_from_form_data({"cpus": ["64"]})).field == "cpus"


@pytest.mark.parametrize(
    "minutes, text", [(1, "00:01:00"), (90, "01:30:00"), (1440, "1-00:00:00"), (10081, "7-00:01:00")]
)
def test_format_runtime(minutes, text):
    assert format_runtime(minutes) == text


@pytest.mark.parametrize("minutes", [0, -1, True, 1.5, "60"])
def test_format_runtime_rejects(minutes):
    with pytest.raises(ValueError):
        format_runtime(minutes)


@pytest.mark.parametrize(
    "minutes, text", [(0, "0 min"), (45, "45 min"), (60, "1 h"), (1441, "1 day 1 min"), (2880, "2 days")]
)
def test_format_duration(minutes, text):
    assert format_duration(minutes) == text


@pytest.mark.parametrize(
    "ref",
    [
        "/opt/images/base.sif", "/opt/images/py3.11+cuda_12-x.sif", "docker://nvcr.io/nvidia/torch:24.01-py3",
        "docker://ghcr.io/org/img@sha256:abc123", "oras://registry.example.org/carme/base:1",
        "library://sylabs/default/alpine:latest",
    ],
)
def test_image_reference_accepted(ref):
    assert validate_image_reference(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "images/base.sif", "/opt/images/base.img", "/opt/../etc/base.sif", "/opt/my image.sif",
        "/opt/images/$(id).sif", "http://example.org/x.sif", "docker://", "docker://img;rm", "docker://img\n",
        "/" + "a" * 520 + ".sif", None,
    ],
)
def test_image_reference_rejected(ref):
    with pytest.raises(ValueError, match="image reference"):
        validate_image_reference(ref)


def test_validate_limits_accepts_the_example():
    assert validate_limits(LIMITS) is LIMITS


def test_limits_are_frozen():
    with pytest.raises(TypeError):
        LIMITS.allowed_images["evil"] = "/x.sif"


BATCH = LIMITS.partitions[1]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"partitions": ()}, "partitions"),
        ({"partitions": (PartitionPolicy("bad name", 1, 60),)}, "partitions[0].name"),
        ({"partitions": LIMITS.partitions + (PartitionPolicy("batch", 1, 60),)}, "partitions[2].name"),
        ({"partitions": (PartitionPolicy("interactive", -1, 60), BATCH)}, "partitions[0].max_gpus"),
        ({"partitions": (PartitionPolicy("interactive", 1, 0), BATCH)}, "partitions[0].max_runtime"),
        ({"max_gpus": -1}, "max_gpus"), ({"max_gpus": True}, "max_gpus"), ({"min_cpus": 0}, "min_cpus"),
        ({"default_runtime_minutes": 0}, "default_runtime_minutes"),
        ({"default_runtime_minutes": 20000}, "default_runtime_minutes"),
        ({"routing_small_partition": "gpu"}, "routing_small_partition"),
        ({"routing_large_partition": "gpu"}, "routing_large_partition"),
        ({"allowed_images": {"Bad": "/x.sif"}, "default_image": "Bad"}, "allowed_images"),
        ({"allowed_images": {"base": "relative.sif"}}, "allowed_images['base']"),
        ({"default_image": "torch2"}, "default_image"),
    ],
)
def test_validate_limits_names_the_field(changes, field):
    with pytest.raises(ValueError) as info:
        validate_limits(dataclasses.replace(LIMITS, **changes))
    assert str(info.value).startswith(field)


# Shell and SLURM smuggling attempts: every one must be refused, naming the field it came through.
SMUGGLING = [
    "$(touch /tmp/x)", "`touch /tmp/x`", "\n#SBATCH --uid=0", "\ntouch /tmp/x", "; touch /tmp/x",
    " && touch /tmp/x", " | touch /tmp/x", "'", '"', "${IFS}", "\x00", "\r", "\t", " x", "x" * 100_000,
    "\u200b", "\u2028",  # zero-width space, line separator
]
VALID = {"gpus": "1", "partition": "interactive", "runtime": "1:00", "reservation": "maint", "image": "base"}
LOOKALIKES = {
    "gpus": ["１", "١", "𝟏", "¹"],
    "partition": ["ｉｎｔｅｒａｃｔｉｖｅ", "interactivе", "İnteractive"],  # fullwidth, cyrillic е, dotted I
    "runtime": ["１:00", "1∶00", "1:٠٠", "1‐00"],  # fullwidth, ratio sign, arabic digits, unicode hyphen
    "reservation": ["mаint", "ｍａｉｎｔ", "maint\u0301"],
    "image": ["bаse", "ｂａｓｅ", "base\u0301"],
}
SMUGGLING_CASES = [
    (field, text)
    for field, valid in VALID.items()
    for attack in SMUGGLING
    for text in (attack, valid + attack, attack + valid)
] + [(field, text) for field, texts in LOOKALIKES.items() for text in texts]


@pytest.mark.parametrize("field, value", SMUGGLING_CASES)
def test_smuggling_is_refused_naming_the_field(field, value):
    error = error_for({**VALID, field: value})
    assert error.field == field
    assert "\n" not in str(error) and "\r" not in str(error) and "\x00" not in str(error)
    assert len(str(error)) < 300


def test_valid_values_of_the_smuggling_test_are_accepted():
    assert parse_options(VALID, LIMITS).partition == "interactive"


def test_form_transport_fields_are_not_options():
    formdata = {"_xsrf": ["2|abc"], "image": ["base"], "gpus": ["1"], "evil": ["x"]}
    assert options_from_form_data(formdata) == {"image": "base", "gpus": "1", "evil": ["x"]}
