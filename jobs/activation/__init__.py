"""Activation: what marketers act on, built nightly on the published segments, scores, tags and
recommendations: campaign target lists with holdout groups and their exports, measured lift,
association rules for cross-selling, and the shop's daily KPIs."""
