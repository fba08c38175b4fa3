"""The session's four stages, one way only: listen -> recognize -> translate -> speak. Each is
a loop over its own queue; model calls are awaited from the scheduler."""

from babelcall.realtime.stages.base import END, MAX_DOOR_S, Context, Flow, Inbox, Stage
from babelcall.realtime.stages.listen import ListenStage
from babelcall.realtime.stages.recognize import RecognizeStage, SourceText
from babelcall.realtime.stages.speak import SpeakStage
from babelcall.realtime.stages.translate import TargetText, TranslateStage

__all__ = ["END", "MAX_DOOR_S", "Context", "Flow", "Inbox", "ListenStage", "RecognizeStage",
           "SourceText", "SpeakStage", "Stage", "TargetText", "TranslateStage"]
