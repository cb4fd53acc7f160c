"""The options form offers exactly what parse_options accepts, and escapes what it shows."""

from __future__ import annotations

import dataclasses

import html.parser

from carme_spawner.form import FormDefaults, ImageChoice, defaults_from_last_choice, render_options_form
from carme_spawner.reservation_choice import ReservationChoice

from .samples import LIMITS

IMAGES = [
    ImageChoice("base", "Plain Python", "CPU only <b>x</b>", gpu="none", tags=(("framework", "python"),)),
    ImageChoice("torch", "PyTorch <script>alert(1)</script>", "GPU", gpu="required", tags=(("cuda", "12.4"),)),
]


class Inputs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.inputs, self.options, self.select = [], [], ""

    def handle_starttag(self, tag, attrs):
        if tag == "input":
            self.inputs.append(dict(attrs))
        if tag == "select":
            self.select = dict(attrs).get("name", "")
        if tag == "option":
            self.options.append({**dict(attrs), "_select": self.select})


def parsed(text):
    p = Inputs()
    p.feed(text)
    return p


def test_form_lists_images_limits_and_partitions():
    text = render_options_form(IMAGES, LIMITS, FormDefaults(image="torch", gpus=1))
    p = parsed(text)
    radios = [i for i in p.inputs if i.get("name") == "image"]
    assert [r["value"] for r in radios] == ["base", "torch"]
    assert [r for r in radios if "checked" in r][0]["value"] == "torch"
    gpus = next(i for i in p.inputs if i.get("name") == "gpus")
    assert gpus["max"] == str(LIMITS.max_gpus) and gpus["value"] == "1"
    assert [o["value"] for o in p.options if o["_select"] == "partition"] == ["", "interactive", "batch"]
    assert f"Your limit: {LIMITS.max_gpus} per server." in text
    assert "framework: python" in text and "cuda: 12.4" in text


def test_catalog_text_is_escaped():
    text = render_options_form(IMAGES, LIMITS, FormDefaults(image="base"))
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text
    assert "<b>x</b>" not in text


def test_last_choice_is_the_default_when_still_valid():
    last = {"image": "torch", "gpus": 2, "runtime": "2:30", "partition": "batch", "reservation": "r1"}
    offered = [ReservationChoice("r1", 2_000_000_000, 2_000_003_600, False, "carme-n1")]
    d = defaults_from_last_choice(last, LIMITS, IMAGES, offered)
    assert (d.image, d.gpus, d.runtime, d.partition, d.reservation) == ("torch", 2, "2:30", "batch", "r1")
    assert defaults_from_last_choice(last, LIMITS, IMAGES).reservation == ""  # r1 is no longer offered
    stale = {"image": "gone", "gpus": 99, "partition": "nope"}
    d = defaults_from_last_choice(stale, LIMITS, IMAGES)
    assert (d.image, d.gpus, d.partition) == (LIMITS.default_image, 0, "")
    assert d.runtime == "1:00"


def test_user_defined_images_show_their_owner_next_to_the_badge():
    """Finding 5: a shared image cannot pass for a site image on the form."""
    images = IMAGES + [
        ImageChoice("dave/torch", "PyTorch 2.5 (GPU)", section="shared", owner="dave"),
        ImageChoice("mine", "My image", section="user", owner="alice"),
    ]
    text = render_options_form(images, LIMITS, FormDefaults(image="base"))
    radios = [i["value"] for i in parsed(text).inputs if i.get("name") == "image"]
    assert radios == ["base", "torch", "dave/torch", "mine"]
    shared_card = text[text.index('value="dave/torch"'):text.index('value="mine"')]
    assert ">shared</span>" in shared_card and "shared by dave" in shared_card
    assert "added by alice" in text[text.index('value="mine"'):]
    assert text.count("carme-image-owner") == 2  # none for the site images


def test_without_a_valid_choice_a_site_image_is_preselected_never_a_user_defined_one():
    shared = ImageChoice("dave/base", "A shared base", section="shared", owner="dave")
    d = defaults_from_last_choice({"image": "base"}, LIMITS, [shared])
    assert d.image == ""  # the default image is gone: nothing preselected, the user chooses
    assert defaults_from_last_choice({}, LIMITS, [shared, IMAGES[1]]).image == "torch"
    assert defaults_from_last_choice({"image": "dave/base"}, LIMITS, [shared]).image == "dave/base"


def test_the_users_quota_and_projects_show_on_the_form():
    limits = dataclasses.replace(LIMITS, projects=("vision",))
    text = render_options_form(IMAGES, limits, FormDefaults(image="base"),
                               quota_lines=["servers: 1 of 2", "GPUs per server: up to 2 <b>"])
    assert 'id="carme-quota"' in text and "servers: 1 of 2 · GPUs per server: up to 2 &lt;b&gt;" in text
    assert '<select class="form-select" id="carme-project" name="project">' in text and '<option value="vision">' in text
    plain = render_options_form(IMAGES, LIMITS, FormDefaults(image="base"))
    assert 'id="carme-quota"' not in plain and 'name="project"' not in plain


def test_the_gpu_types_of_the_cluster_are_offered_with_what_is_free_and_how_old_that_is():
    from carme_slurm.gpu_inventory import gpu_inventory

    from .test_gpu_inventory import N1, N2

    inventory = gpu_inventory([N1, N2])
    text = render_options_form(IMAGES, LIMITS, FormDefaults(image="torch", gpus=1, gpu_type="a100"),
                               gpus=inventory, gpus_age_seconds=12.4)
    p = parsed(text)
    types = [o for o in p.options if o["_select"] == "gpu_type"]
    assert [o["value"] for o in types] == ["", "1g.10gb", "a100"]
    assert [o["value"] for o in types if "selected" in o] == ["a100"]
    assert "(as of 12 s ago)" in text
    def row(partition, gpu_type):
        start = text.index(f'<tr data-partition="{partition}" data-type="{gpu_type}">')
        return " ".join(text[start:text.index("</tr>", start)].split())

    assert '<td class="text-end carme-free">3 free <span class="text-body-secondary">(carme-n1 1 free · carme-n2 2 free)' \
        in row("interactive", "a100")
    assert '<td class="text-end carme-free">3 free</td> <td class="text-end">1</td>' in row("batch", "1g.10gb")
    without = render_options_form(IMAGES, LIMITS, FormDefaults(image="torch"))  # no snapshot yet
    assert 'id="carme-gpus-free"' not in without
    assert [o["value"] for o in parsed(without).options if o["_select"] == "gpu_type"] == [""]


def test_the_form_asks_the_hub_for_the_start_estimate_only_where_there_is_an_endpoint():
    url = "/hub/api/carme/expected-start/users/alice"
    text = render_options_form(IMAGES, LIMITS, FormDefaults(image="torch"), estimate_url=url)
    assert f'id="carme-estimate" role="status" aria-live="polite" data-url="{url}"' in text
    assert "Start: asking SLURM" in text
    assert 'id="carme-estimate"' not in render_options_form(IMAGES, LIMITS, FormDefaults(image="torch"))


def test_an_image_that_needs_a_gpu_is_preselected_with_one():
    defaults = defaults_from_last_choice({"image": "torch"}, LIMITS, IMAGES)
    assert (defaults.image, defaults.gpus) == ("torch", 1)
    assert defaults_from_last_choice({"image": "base"}, LIMITS, IMAGES).gpus == 0
