"""Request and Result models shared by the MCP tools, the REST API and the CLI.

One module per face of the contract: ``generation`` (Request, Result), ``stock``
(Pexels search), ``library`` (find_images), ``export`` (export_image), ``edit`` (edit_image),
``vary`` (vary_image),
``status`` (gpu_status); ``fields`` holds what they share (presets, aspect
ratios, the "null means the default" rule, error wording). Import from here.
"""

from sdxl_mcp.schemas.edit import EditRequest
from sdxl_mcp.schemas.export import (
    EXPORT_PRESETS,
    AltText,
    ExportFormat,
    ExportPreset,
    ExportRequest,
    ExportResult,
)
from sdxl_mcp.schemas.fields import (
    ASPECT_RATIOS,
    QUALITY_PRESETS,
    SAMPLER_NAMES,
    SEED_MAX,
    AspectRatio,
    JobStatus,
    NegativePrompt,
    Prompt,
    QualityPreset,
    RefinerMode,
    SamplerName,
    describe_validation_error,
    infotext_sampler,
    null_means_default,
    without_default_nulls,
)
from sdxl_mcp.schemas.generation import (
    GenerationRequest,
    GenerationResult,
    ImageInfo,
    RestGenerationRequest,
    StepCounts,
    Timings,
)
from sdxl_mcp.schemas.library import (
    FindImagesRequest,
    FindImagesResult,
    ImageSource,
    LibraryImage,
)
from sdxl_mcp.schemas.status import (
    EngineStateName,
    EngineStatus,
    GpuStatus,
)
from sdxl_mcp.schemas.stock import (
    DownloadedPhoto,
    Orientation,
    PexelsPhoto,
    PhotoSize,
    StockSearchRequest,
    StockSearchResult,
)
from sdxl_mcp.schemas.vary import VariationsResult, VaryRequest

__all__ = [
    "ASPECT_RATIOS",
    "EXPORT_PRESETS",
    "QUALITY_PRESETS",
    "SAMPLER_NAMES",
    "SEED_MAX",
    "AltText",
    "AspectRatio",
    "DownloadedPhoto",
    "EditRequest",
    "EngineStateName",
    "EngineStatus",
    "ExportFormat",
    "ExportPreset",
    "ExportRequest",
    "ExportResult",
    "FindImagesRequest",
    "FindImagesResult",
    "GenerationRequest",
    "GenerationResult",
    "GpuStatus",
    "ImageInfo",
    "ImageSource",
    "JobStatus",
    "LibraryImage",
    "NegativePrompt",
    "Orientation",
    "PexelsPhoto",
    "PhotoSize",
    "Prompt",
    "QualityPreset",
    "RefinerMode",
    "RestGenerationRequest",
    "SamplerName",
    "StepCounts",
    "StockSearchRequest",
    "StockSearchResult",
    "Timings",
    "VariationsResult",
    "VaryRequest",
    "describe_validation_error",
    "infotext_sampler",
    "null_means_default",
    "without_default_nulls",
]
