"""Imported once by the fork server the local detector workers are forked from.

Loading the models here, before any worker exists, lets every worker share one copy of
their weights. multiprocessing's fork server ignores a preload module's ImportError and
dies of any other error, so a failure is left for the workers: each loads the models again
when it starts, and reports the error with its first call.
"""

import contextlib
import signal

from racecheck.local.backends import load_models, prepare_detector_process, release_loading_garbage

# Ctrl-C is the runner's to handle, from the first moment (the server ignores it too, but
# only once the preload has finished).
signal.signal(signal.SIGINT, signal.SIG_IGN)
prepare_detector_process()
with contextlib.suppress(Exception):
    load_models()
release_loading_garbage()
