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
# The source tables and the columns the pipeline reads from each (ARCHITECTURE.md, "Input
# interface"); more columns may exist and are carried along, fewer is schema drift.
SOURCE_COLUMNS = {
    "users": (
        "user_id", "signup_at", "gender", "birth_year", "region", "city", "email", "phone",
        "consent_email", "consent_sms", "consent_push", "updated_at",
    ),
    "products": ("product_id", "name", "category_l1", "category_l2", "brand", "price", "is_active", "updated_at"),
    "orders": (
        "order_id", "user_id", "status", "created_at", "paid_at", "total_amount", "discount_amount",
        "coupon_code", "channel", "updated_at",
    ),
    "order_items": ("order_id", "line_no", "product_id", "quantity", "unit_price", "updated_at"),
    "suppressions": ("user_id", "channel", "reason", "suppressed_at", "updated_at"),
}  # fmt: skip
# Personal data in clear: these columns live only in the lake's restricted zone; the warehouse
# holds keyed hashes of them.
PII_COLUMNS = {"users": ("email", "phone")}
ORDER_STATUSES = ("created", "paid", "shipped", "completed", "cancelled", "refunded")
# What counts as a purchase everywhere (spend, RFM, lifecycle, churn, owned items, interest):
# an order that was paid and neither cancelled nor refunded.
PURCHASE_STATUSES = ("paid", "shipped", "completed")
# An order that was paid at some point: a purchase, or refunded (a refund needs a payment).
PAID_STATUSES = (*PURCHASE_STATUSES, "refunded")
# The shop's global suppression list (source table ``suppressions``, key user_id + channel):
# who must never be contacted on a channel, and why. Channel ``all`` suppresses every channel.
SUPPRESSION_CHANNELS = ("email", "sms", "push", "all")
SUPPRESSION_REASONS = ("unsubscribed", "bounced", "complained")
