<#
.SYNOPSIS
Uninstall dreamtray for this user, on Windows.

.DESCRIPTION
Removes dreamtray's environment, its Start menu shortcut and its start at login. Keeps the gallery, styles
and config in %LOCALAPPDATA%\dreamtray unless -Purge is given. Models in the shared Hugging Face cache are
never removed (other applications use them as well).
#>
[CmdletBinding()]
param(
    [switch]$Purge  # remove the gallery, styles and config too
)
$ErrorActionPreference = "Stop"

$DataDir = Join-Path $env:LOCALAPPDATA "dreamtray"
$Venv = Join-Path $DataDir "venv"
$VenvPython = Join-Path $Venv "Scripts\python.exe"

$Works = $false
if (Test-Path $VenvPython) {
    & $VenvPython -c "import dreamtray.commands_install" 2>$null | Out-Null
    $Works = $LASTEXITCODE -eq 0
}
if ($Works) {
    & $VenvPython -m dreamtray.commands_install autostart off
    & $VenvPython -m dreamtray.commands_install launcher remove
} else {
    Write-Host "dreamtray's environment ($Venv) is missing or broken; removing its shortcut and start at login by their usual names"
    $Shortcut = Join-Path $env:APPDATA "Microsoft\Windows\Start Menu\Programs\dreamtray.lnk"
    Remove-Item -Force -ErrorAction SilentlyContinue $Shortcut
    Remove-ItemProperty -Path "HKCU:\Software\Microsoft\Windows\CurrentVersion\Run" -Name "dreamtray" -ErrorAction SilentlyContinue
}

if (Test-Path $Venv) { Remove-Item -Recurse -Force $Venv }
Write-Host "removed dreamtray's environment: $Venv"

if ($Purge) {
    if (Test-Path $DataDir) {
        Remove-Item -Recurse -Force $DataDir
        Write-Host "removed: $DataDir"
    }
} elseif (Test-Path $DataDir) {
    Write-Host "kept (your gallery, styles and config): $DataDir"
    Write-Host "to remove those too: $PSCommandPath -Purge"
}
