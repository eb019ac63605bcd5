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
# What counts as a purchase everywhere (spend, RFM, lifecycle, churn, owned items, interest):
# an order that was paid and neither cancelled nor refunded.
PURCHASE_STATUSES = ("paid", "shipped", "completed")
# An order that was paid at some point: a purchase, or refunded (a refund needs a payment).
PAID_STATUSES = (*PURCHASE_STATUSES, "refunded")
