"""The pull-request gate for users' repositories (action.yml): SARIF for code scanning, the PR comment, and the
scan of a diff's added lines for exchange and AWS credentials."""
