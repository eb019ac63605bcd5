"""The input interface a shop plugs in (see ARCHITECTURE.md): the one definition that the
simulator writes and the cleaning stages check. The data contracts say the same for the
cleaned datasets."""

EVENT_TYPES = (
    "page_view",
    "search",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "favorite",
    "checkout_start",
)
CHANNELS = ("web", "app", "mini_program")
EVENT_FIELDS = (
    "event_id",
    "event_type",
    "event_ts",
    "user_id",
    "anonymous_id",
    "session_id",
    "product_id",
    "query",
    "channel",
    "device",
    "utm_source",
    "price",
)
REQUIRED_EVENT_FIELDS = ("event_id", "event_type", "event_ts", "session_id", "anonymous_id", "channel")
ORDER_STATUSES = ("created", "paid", "shipped", "completed", "cancelled", "refunded")
