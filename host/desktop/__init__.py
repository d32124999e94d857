"""The desktop side: tray, menu, hotkeys, selection, notifications, control channel, login and menu entries."""
