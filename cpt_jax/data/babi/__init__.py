"""bAbI: the 20 reasoning tasks generated from a world simulation, in the original file format, rendered
for LM training, split into ArrayRecord datasets and scored. See docs/babi.md."""

from cpt_jax.data.babi.dataset import BabiSource, build_babi_splits, write_babi_dataset
from cpt_jax.data.babi.fileformat import Line, format_stories, parse_stories, read_file, write_file
from cpt_jax.data.babi.generate import generate_stories
from cpt_jax.data.babi.render import ANSWER_DELIMITER, render_example, render_story
from cpt_jax.data.babi.score import majority_baseline, normalize, score

__all__ = ["ANSWER_DELIMITER", "BabiSource", "Line", "build_babi_splits", "format_stories", "generate_stories",
           "majority_baseline", "normalize", "parse_stories", "read_file", "render_example", "render_story", "score",
           "write_babi_dataset", "write_file"]
