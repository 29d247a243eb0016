"""Generator tuning (SynPro): rewards, data influence and GRPO on TRL with a peft adapter."""
