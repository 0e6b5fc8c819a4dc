"""Figure files: PNG and PDF side by side, byte-identical when the same figure is saved again."""

import hashlib

import matplotlib.pyplot as plt

from biaskit import plots


def test_save_writes_png_and_pdf_reproducibly(tmp_path):
    digests = []
    for run in range(2):
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3], [1, 4, 9])
        paths = plots.save(fig, tmp_path / f"run{run}" / "fig.anything")
        plt.close(fig)
        assert [p.suffix for p in paths] == [".png", ".pdf"]
        digests.append([hashlib.sha256(p.read_bytes()).hexdigest() for p in paths])
    assert digests[0] == digests[1]
