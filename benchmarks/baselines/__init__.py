"""The floor of stageserve's stack: the same inference behind a minimal route, served by uvicorn."""
