# The catalogue

Written by `make gen` from `specs/` and `specs/LISTING.json`; `codegen check` holds it current. Do not edit.

**14 endpoints generated**: 14 from fal's full JSON Schema, 0 from fal's TypeScript types only (no bounds, numbers not told from integers; a live `make sync` replaces them with fal's full schema).

## By category

| category | endpoints | of them types only |
|---|---:|---:|
| image-to-image | 14 | 0 |

## By source of the schema

| newest source | endpoints |
|---|---:|
| `analogy` | 1 |
| `fal-js` | 13 |

## Endpoints

| endpoint | display name | category | module | schema | newest source | date | streams | realtime |
|---|---|---|---|---|---|---|---|---|
| `fal-ai/alpha-image-232/edit-image` |  | image-to-image | `fal_ai/alpha_image_232/edit_image.py` | JSON Schema | `analogy` |  |  |  |
| `fal-ai/bytedance/seededit/v3/edit-image` |  | image-to-image | `fal_ai/bytedance/seededit/v3/edit_image.py` | JSON Schema | `fal-js` |  |  |  |
| `fal-ai/flux-2/lora/edit` |  | image-to-image | `fal_ai/flux_2/lora/edit.py` | JSON Schema | `fal-js` |  | yes |  |
| `fal-ai/flux-pro/kontext/max/multi` |  | image-to-image | `fal_ai/flux_pro/kontext/max/multi.py` | JSON Schema | `fal-js` |  |  |  |
| `fal-ai/flux/dev/image-to-image` |  | image-to-image | `fal_ai/flux/dev/image_to_image.py` | JSON Schema | `fal-js` |  |  |  |
| `fal-ai/gemini-flash-edit` |  | image-to-image | `fal_ai/gemini_flash_edit.py` | JSON Schema | `fal-js` |  |  |  |
| `fal-ai/image-editing/background-change` |  | image-to-image | `fal_ai/image_editing/background_change.py` | JSON Schema | `fal-js` |  |  |  |
| `fal-ai/image-editing/color-correction` |  | image-to-image | `fal_ai/image_editing/color_correction.py` | JSON Schema | `fal-js` |  |  |  |
| `fal-ai/image-editing/face-enhancement` |  | image-to-image | `fal_ai/image_editing/face_enhancement.py` | JSON Schema | `fal-js` |  |  |  |
| `fal-ai/image-editing/object-removal` |  | image-to-image | `fal_ai/image_editing/object_removal.py` | JSON Schema | `fal-js` |  |  |  |
| `fal-ai/luma-photon/modify` |  | image-to-image | `fal_ai/luma_photon/modify.py` | JSON Schema | `fal-js` |  |  |  |
| `fal-ai/post-processing/sharpen` |  | image-to-image | `fal_ai/post_processing/sharpen.py` | JSON Schema | `fal-js` |  |  |  |
| `fal-ai/qwen-image-2/edit` |  | image-to-image | `fal_ai/qwen_image_2/edit.py` | JSON Schema | `fal-js` |  |  |  |
| `fal-ai/recraft/v3/image-to-image` |  | image-to-image | `fal_ai/recraft/v3/image_to_image.py` | JSON Schema | `fal-js` |  |  |  |
