"""QR codes of payment pages, for a TV to show (PNG for any TV, SVG where it can scale them)."""

from __future__ import annotations

import io

import qrcode
from qrcode.image.pure import PyPNGImage
from qrcode.image.svg import SvgPathImage

__all__ = ["FORMATS", "render"]

FORMATS = {"png": (PyPNGImage, "image/png"), "svg": (SvgPathImage, "image/svg+xml")}


def render(text: str, image_format: str) -> tuple[bytes, str]:
    """Encode ``text`` with a medium error correction and the standard 4-module quiet zone."""
    factory, mimetype = FORMATS[image_format]
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8,
                         border=4, image_factory=factory)
    code.add_data(text)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image().save(out)
    return out.getvalue(), mimetype
