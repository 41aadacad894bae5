"""Where HitPaw's API lives and how a request is authenticated.

Source: HitPaw's public developer documentation, https://github.com/shiyao1122/hitpaw-developer-docs.
"""

from __future__ import annotations

DEFAULT_BASE_URL = "https://api-base.hitpaw.com"
PHOTO_ENHANCER_PATH = "/api/photo-enhancer"
VIDEO_ENHANCER_PATH = "/api/video-enhancer"
TASK_STATUS_PATH = "/api/task-status"
#: The header that carries the API key on every API request (never on a result download).
API_KEY_HEADER = "Apikey"
#: The ``code`` of a success envelope (HitPaw's documents show 200; 0 is seen too).
SUCCESS_CODES = (200, 0)
#: Presigned uploads (``docs/common/oss-storage.md``): a signed PUT URL and the ``access_url`` to
#: give as ``img_url`` / ``video_url``. Their success envelope uses ``"code": 0``.
OSS_PRESIGN_PUT_PATH = "/api/oss/presign-put"
OSS_PRESIGN_PUT_BATCH_PATH = "/api/oss/presign-put/batch"
