import os
import sys

from reference_app.cli import main

code = main()
if "reference_app.audio" in sys.modules:
    from reference_app import audio, resources

    if audio.abandoned_streams():
        # A stalled device left a PortAudio stream that could not be stopped,
        # and PortAudio's exit handler (Pa_Terminate) would wait for it
        # forever. Do what a normal exit does for this program (flush the
        # output, delete temp files) and leave without the exit handlers.
        resources.cleanup_live_managers()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
sys.exit(code)
