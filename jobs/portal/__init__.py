"""The marketers' download portal: campaign lists and nightly reports behind sign-in, roles and an audit log."""
