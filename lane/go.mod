module keyguard/lane

go 1.22
