"""What a command does, without click: lifecycle, dns, guards, verify, recovery, status, backups."""
