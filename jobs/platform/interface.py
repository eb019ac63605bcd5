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
# Where an order was placed or an event happened: online, and offline (a physical store's point
# of sale, a phone order). Sources spelling them otherwise are mapped by CHANNEL_ALIASES.
EVENT_CHANNELS = ("web", "app", "mini_program")  # where behaviour is logged
CHANNELS = (*EVENT_CHANNELS, "store", "phone")
CHANNEL_ALIASES = {"pos": "store", "in_store": "store", "instore": "store", "shop": "store", "retail": "store",
                   "telephone": "phone", "call_center": "phone", "callcentre": "phone", "online": "web"}  # fmt: skip
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
# Optional source columns (a source without them gets the default): an order is a sale or a
# return (a credit note: negative line quantities, optionally linked to the sale it reverses);
# a product is merchandise or one of the non-merchandise types (never recommended, never in
# baskets or product KPIs, still in order totals). ``sku``, ``order_number`` and
# ``customer_code`` are the shop's own keys where the warehouse ids are surrogates of them.
OPTIONAL_SOURCE_COLUMNS = {
    "users": {"customer_code": None},
    "orders": {"order_type": "sale", "original_order_id": None, "order_number": None},
    "products": {"product_type": "merchandise", "sku": None},
}
ORDER_TYPES = ("sale", "return")
PRODUCT_TYPES = ("merchandise", "shipping", "fee", "adjustment", "voucher", "donation", "packaging", "service")
# Personal data in clear: these columns live only in the lake's restricted zone; the warehouse
# holds keyed hashes of them.
PII_COLUMNS = {"users": ("email", "phone")}
ORDER_STATUSES = ("created", "paid", "shipped", "completed", "cancelled", "refunded")
# Status the published reader gives a credit note, and a sale whose returns reach its total
# (jobs.platform.published.apply_returns): paid once, never a purchase.
RETURNED = "returned"
# What counts as a purchase everywhere (spend, RFM, lifecycle, churn, owned items, interest):
# an order that was paid and neither cancelled nor refunded.
PURCHASE_STATUSES = ("paid", "shipped", "completed")
# An order that was paid at some point: a purchase, or refunded (a refund needs a payment).
PAID_STATUSES = (*PURCHASE_STATUSES, "refunded", RETURNED)
# The shop's global suppression list (source table ``suppressions``, key user_id + channel):
# who must never be contacted on a channel, and why. Channel ``all`` suppresses every channel.
SUPPRESSION_CHANNELS = ("email", "sms", "push", "all")
SUPPRESSION_REASONS = ("unsubscribed", "bounced", "complained")
