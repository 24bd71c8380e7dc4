"""Research loop: forgetting metrics, adaptation scaling laws, planning."""
