"""Gaussian heatmap targets and their decoding (argmax plus sub-pixel refinement), batched.

Coordinates are continuous input pixels (pixel k spans [k, k + 1)). Heatmap pixel (i, j) at
``stride`` input pixels per heatmap pixel has its centre at input point ((j + 0.5) * stride,
(i + 0.5) * stride).
"""
from __future__ import annotations

import torch


def gaussian_heatmaps(keypoints: torch.Tensor, height: int, width: int, stride: float,
                      sigma: float = 1.0) -> torch.Tensor:
    """Unnormalised Gaussians (peak 1 at the joint) for every joint.

    Args:
        keypoints: [B, J, 2] (x, y) in input pixels.
        height, width: heatmap size. stride: input pixels per heatmap pixel.
        sigma: Gaussian standard deviation in heatmap pixels.
    Returns:
        [B, J, height, width] float32.
    """
    points = keypoints.float() / stride - 0.5  # heatmap index space
    points = torch.nan_to_num(points, nan=-1e4, posinf=-1e4, neginf=-1e4)
    xs = torch.arange(width, dtype=torch.float32, device=keypoints.device)
    ys = torch.arange(height, dtype=torch.float32, device=keypoints.device)
    gx = torch.exp(-((xs - points[..., 0:1]) ** 2) / (2 * sigma**2))  # [B, J, W]
    gy = torch.exp(-((ys - points[..., 1:2]) ** 2) / (2 * sigma**2))  # [B, J, H]
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)


def _vertex(left: torch.Tensor, centre: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Offset of the vertex of the parabola through the logarithms of three equally spaced samples
    from the middle one (exact for a Gaussian), and whether that parabola opens downward."""
    eps = 1e-10
    log_left, log_centre, log_right = (torch.log(v.clamp(min=eps)) for v in (left, centre, right))
    curvature = log_left - 2 * log_centre + log_right
    usable = (curvature < -1e-6) & (left > eps) & (centre > eps) & (right > eps)
    safe = torch.where(usable, curvature, torch.full_like(curvature, -1.0))
    return 0.5 * (log_left - log_right) / safe, usable


def _refine(padded: torch.Tensor, peak: torch.Tensor, other: torch.Tensor, size: int, along_x: bool,
            row: int) -> torch.Tensor:
    """Sub-pixel offset of the peak along one axis, from three samples around it (shifted inwards at
    the border); where the fit fails, a quarter pixel towards the larger neighbour."""
    if size < 3:
        return torch.zeros_like(peak, dtype=torch.float32)
    middle = peak.clamp(1, size - 2)

    def value(at: torch.Tensor) -> torch.Tensor:
        y, x = (other, at) if along_x else (at, other)
        return padded.gather(2, ((y + 1) * row + x + 1).unsqueeze(2)).squeeze(2)

    vertex, usable = _vertex(value(middle - 1), value(middle), value(middle + 1))
    offset = (middle - peak).float() + vertex
    quarter = 0.25 * torch.sign(value(peak + 1) - value(peak - 1))
    quarter = torch.where((peak > 0) & (peak < size - 1), quarter, torch.zeros_like(quarter))
    return torch.where(usable, offset, quarter).clamp(-0.5, 0.5)


def decode_heatmaps(heatmaps: torch.Tensor, stride: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints and confidences from heatmaps: the argmax refined to sub-pixel precision.

    Args:
        heatmaps: [B, J, H, W].
        stride: input pixels per heatmap pixel.
    Returns:
        ``(keypoints [B, J, 2] in input pixels, confidence [B, J])``; the confidence is the peak value.
    """
    batch, joints, height, width = heatmaps.shape
    maps = heatmaps.detach().float()
    confidence, position = maps.reshape(batch, joints, -1).max(dim=2)
    ys, xs = position // width, position % width
    padded = torch.nn.functional.pad(maps, (1, 1, 1, 1), value=0.0).reshape(batch, joints, -1)
    dx = _refine(padded, xs, ys, width, True, width + 2)
    dy = _refine(padded, ys, xs, height, False, width + 2)
    x = (xs.float() + dx + 0.5) * stride
    y = (ys.float() + dy + 0.5) * stride
    return torch.stack([x, y], dim=2), confidence
