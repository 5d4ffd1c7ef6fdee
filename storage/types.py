from dataclasses import dataclass, field


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str = ""
    content_type: str = ""
    metadata: dict = field(default_factory=dict)
