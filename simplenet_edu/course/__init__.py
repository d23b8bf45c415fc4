"""What the course's notebooks share, beside the library they teach.

:mod:`.settings` (``from simplenet_edu import course``: which images, which configuration, one cached
trained model, the quick and paper modes, small analyses the notebooks need), :mod:`.viz` (the
figures; those of images and stages written in :mod:`.stage_figures`), :mod:`.widgets` (the threshold
explorer, built from :mod:`.explorer_parts`) and :mod:`.baselines` (the nearest-neighbour baseline
that the course measures SimpleNet against), and :mod:`.results` (what ``results/`` records: the paper's
MVTec AD numbers and the development suite's table of models).
"""

from .settings import *  # noqa: F401,F403  (the notebooks call course.course_model(), course.quick_mode()...)
from .settings import __all__  # noqa: F401
