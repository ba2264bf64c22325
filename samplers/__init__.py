"""Pure sampling math for Hyper-SD (no ComfyUI import): schedules and the TCD sampler."""
