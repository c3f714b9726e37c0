"""The benchmark harness: stageserve beside the floor of its stack and beside its peers."""
