"""Names of test images that stay unique when frames share basenames across folders."""
import os
import os.path as osp


def relative_image_name(img_path: str, data_root: str | None) -> str:
    """Return ``img_path`` below ``data_root``, without its extension.

    DSEC's test frames are ``<seq>/<i:06d>.png``, so a basename names one frame
    per sequence; the path below the dataset root names exactly one.

    Args:
        img_path (str): The image's path, as in ``SegDataSample.img_path``.
        data_root (str | None): The dataset's ``data_root``.

    Returns:
        str: e.g. ``'69mask_test_edges/zurich_city_13_a/000001'``; the bare
        basename (no extension) when ``data_root`` is None or does not hold
        ``img_path``.
    """
    stem = osp.splitext(img_path)[0]
    if data_root:
        rel = osp.relpath(stem, data_root)
        if rel != os.pardir and not rel.startswith(os.pardir + os.sep):
            return rel
    return osp.basename(stem)
