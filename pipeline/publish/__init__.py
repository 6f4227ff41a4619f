"""Publishing a run: its dataset, card and report to a Hugging Face Hub dataset repo (`selfinstruct push`)."""
