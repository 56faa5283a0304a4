"""pipelines.resolution: the one resolution policy (grid, clamp, bins) and its notice."""

from pipelines.resolution import notice, snap


def test_resolution_is_snapped_to_the_latent_grid_and_capped():
    assert snap(500, 500, native=512) == (512, 512)
    assert snap(5000, 5000, native=512) == (1024, 1024)
    assert snap(10, 10, native=512) == (128, 128)
    assert snap(300, 300, native=512, multiple=32) == (288, 288)


def test_a_binned_model_takes_the_nearest_scale_then_the_nearest_aspect_ratio():
    bins = {256: [(256, 256), (192, 320)], 128: [(128, 128), (96, 160)]}  # written by hand, not by the code
    assert snap(160, 160, native=256, multiple=32, bins=bins) == (128, 128)  # log area: nearer 128^2 than 256^2
    assert snap(192, 192, native=256, bins=bins) == (256, 256)  # and 192^2 is nearer 256^2
    assert snap(256, 448, native=256, bins=bins) == (192, 320)  # wide: the wide bin of the nearer scale
    assert snap(100000, 100000, native=256, bins=bins) == (256, 256)


def test_notice_names_what_was_asked_and_what_is_used():
    assert notice((512, 512), (512, 512)) == ""
    assert notice((100000, 100000), (1024, 1024)) == "resolution 100000 -> 1024"
    assert notice((192, 192), (128, 160)) == "resolution 192 -> 128x160"
    assert notice((100, 200), (128, 192)) == "resolution 100x200 -> 128x192"
