#!/usr/bin/env bash
# The source guide's REST call, against `sdxl-mcp serve --http` (default 127.0.0.1:8000).
# With SDXL_MCP_HTTP_TOKEN set, export TOKEN=<the token> first.
set -euo pipefail
URL=${URL:-http://127.0.0.1:8000}
auth=()
[ -n "${TOKEN:-}" ] && auth=(-H "Authorization: Bearer $TOKEN")
curl -sS -X POST "$URL/api/media/generate-image" \
  -H "Content-Type: application/json" "${auth[@]}" \
  -d '{
    "prompt": "futuristic AI agent sitting at holographic desk, cyberpunk, neon lights, highly detailed",
    "use_pexels": false,
    "use_generation": true,
    "use_refinement": true,
    "high_quality": true,
    "num_inference_steps": 50,
    "guidance_scale": 8.0
  }'
echo
