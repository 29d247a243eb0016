"""hf_megadocs: data-efficient pre-training with synthetic megadocs on the Hugging Face stack."""

__version__ = "0.1.0"
