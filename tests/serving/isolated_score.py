"""Scores a serving package the way a bare server would: run with ``python -I``, importing only torch and fbgemm_gpu.

    python -I isolated_score.py PACKAGE REQUESTS.pt OUT.pt

smes_rec and torchrec are made unimportable before anything is imported, so the package cannot lean on them.
Writes ``{"example": probs, "requests": [probs, ...], "blocked": [...], "loaded": [...]}`` to OUT.pt.
"""

import sys

_BLOCKED = ("smes_rec", "torchrec")


class _Blocker:
    """A meta-path finder refusing smes_rec and torchrec (they are installed in the test environment)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            raise ImportError(f"{name} is blocked in the isolated serving process")
        return None


sys.meta_path.insert(0, _Blocker())

import fbgemm_gpu  # noqa: E402,F401  (registers the quantized embedding kernels)
import torch  # noqa: E402


def main(package: str, requests: str, out: str) -> None:
    model = torch.jit.load(f"{package}/model.pt")
    example = torch.load(f"{package}/example_inputs.pt")
    assert isinstance(example, tuple), type(example)
    with torch.no_grad():
        result = {"example": model(*example), "requests": [model(*r) for r in torch.load(requests)]}
    blocked = []
    for name in _BLOCKED:
        try:
            __import__(name)
        except ImportError:
            blocked.append(name)
    result["blocked"] = blocked
    result["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in _BLOCKED)
    torch.save(result, out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
