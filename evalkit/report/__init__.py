"""Reports, leaderboards and the paired regression gate over run directories (episode store + manifest)."""
