"""`topreward view`: one self-contained HTML page of episodes, each video beside its progress curves.

`collect` reads what the other commands wrote (a `score` result, a `bench` output folder, an `annotate`
parquet with its LeRobot dataset) into `ViewEpisode`s, one curve per method or model; `page` writes the
page, `rerun` a Rerun recording, `overlay` videos with the curve drawn under the frames. It imports the datasets (to find an episode's video), the annotation file's reader
(`topreward.annotate.progress_file`) and the basics, never the methods or the engine: it reads results, it
does not compute them.
"""

from topreward.view.collect import ViewEpisode, from_annotations, from_bench, from_results
from topreward.view.page import write_view

__all__ = ["ViewEpisode", "from_annotations", "from_bench", "from_results", "write_view"]
