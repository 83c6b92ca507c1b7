"""report.html: self-contained (every image embedded, nothing fetched), parsed without a browser and rendered by
headless Chromium when it is installed."""
import base64
import html.parser
import os
import re
import shutil
import subprocess

import pytest

from slimflowers.study import compare
from slimflowers.study import report_plots
from tests.test_report_stats import _right
from tests.test_report_stats import write_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("html") / "runs")
  runs = [write_run(root, "big", model="mobilenet_v1_050", right=_right(54)),
          write_run(root, "big-seed1", model="mobilenet_v1_050", right=_right(52, 2), seed=1),
          write_run(root, "small", model="mobilenet_v1_025", right=_right(42, 10)),
          write_run(root, "small-seed1", model="mobilenet_v1_025", right=_right(44, 12), seed=1)]
  report = compare.write_report(runs, os.path.join(root, "report"),
                                commands=[("the study", "python -m slimflowers.study --models=a,b --seeds=2")])
  return report.paths["report.html"]


class _Parser(html.parser.HTMLParser):
  def __init__(self):
    super().__init__()
    self.images, self.tables, self.headings, self.links, self.scripts = [], 0, [], [], 0
    self._heading = None

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == "img":
      self.images.append(attrs.get("src", ""))
    elif tag == "table":
      self.tables += 1
    elif tag == "script":
      self.scripts += 1
    elif tag in ("h2", "h3"):
      self._heading = ""
    for key in ("href", "src"):
      if key in attrs and tag != "img":
        self.links.append(attrs[key])

  def handle_data(self, data):
    if self._heading is not None:
      self._heading += data

  def handle_endtag(self, tag):
    if tag in ("h2", "h3") and self._heading is not None:
      self.headings.append(self._heading.strip())
      self._heading = None


def test_the_page_parses_every_image_resolves_and_nothing_is_fetched(page):
  with open(page, encoding="utf-8") as f:
    text = f.read()
  parser = _Parser()
  parser.feed(text)
  assert len(parser.images) >= 6  # four plots and a confusion matrix per run
  for src in parser.images:
    if src.startswith("data:image/png;base64,"):
      assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    else:  # a file beside the page
      assert not re.match(r"^[a-z]+://", src) and os.path.isfile(os.path.join(os.path.dirname(page), src)), src
  assert not parser.links and parser.scripts == 0
  assert not re.search(r"https?://", text)  # no CDN, no network
  for heading in ("Summary", "Across seeds", "Ranking", "Pairwise comparisons", "Curves and efficiency",
                  "Efficiency frontier", "Per class", "Export", "Reproduce"):
    assert heading in parser.headings, heading
  assert parser.tables >= 6  # summary, seeds, pairwise matrix, per-class and most-confused tables
  assert 'class="better"' in text and 'class="worse"' in text  # the matrix is coloured by significance
  assert "python -m slimflowers.study --models=a,b --seeds=2" in text


PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message || e.type)); }, true);
window.addEventListener("load", function () {
  var broken = Array.prototype.filter.call(document.images, function (i) { return !i.complete || !i.naturalWidth; });
  var root = document.documentElement;
  root.setAttribute("data-images", String(document.images.length));
  root.setAttribute("data-broken", String(broken.length));
  root.setAttribute("data-errors", window.__errors.join("|"));
  root.setAttribute("data-probe", "done");
});
</script>
"""


def _render(path, tmp_path):
  """The DOM after load, from headless Chromium (bounded; a profile of its own per render, so one render never waits
  for the previous one's profile lock)."""
  profile = tmp_path / f"profile-{os.path.basename(path)}-{len(os.listdir(tmp_path))}"
  proc = subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                         "--disable-dev-shm-usage", "--disable-extensions", f"--user-data-dir={profile}",
                         "--virtual-time-budget=5000", "--dump-dom", "file://" + os.path.abspath(path)],
                        capture_output=True, text=True, timeout=240, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc.stdout


def _probed(page, tmp_path, edit=lambda text: text):
  """A copy of the page with the probe first in <head> (so it sees every later error), rendered."""
  with open(page, encoding="utf-8") as f:
    text = edit(f.read())
  copy = tmp_path / f"probed-{len(os.listdir(tmp_path))}.html"
  copy.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
  dom = _render(copy, tmp_path)
  found = dict(re.findall(r'data-(images|broken|errors|probe)="([^"]*)"', dom.split(">", 2)[1]))
  assert found.get("probe") == "done", dom[:2000]
  return found


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package `chromium`)")
def test_chromium_renders_every_image_without_a_script_error(page, tmp_path):
  found = _probed(page, tmp_path)
  assert int(found["images"]) >= 6 and found["broken"] == "0" and found["errors"] == "", found
  # The probe itself catches what it is for: a broken image and a script error are reported.
  found = _probed(page, tmp_path, lambda text: text.replace(
      "</body>", '<img src="missing.png"><script>undefined_function();</script></body>'))
  assert found["broken"] == "1" and "undefined_function" in found["errors"], found


def test_pareto_optimal_points():
  points = [(1.0, 90.0), (2.0, 85.0), (0.5, 80.0), (3.0, 95.0), (1.0, 89.0)]
  assert report_plots.pareto_optimal(points) == [0, 2, 3]
