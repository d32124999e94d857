<#
.SYNOPSIS
Uninstall dreamtray for this user, on Windows.

.DESCRIPTION
Removes dreamtray's environment, its Start menu shortcut and its start at login. Keeps the gallery, styles
and config unless -Purge is given: then dreamtray's own folders go too (%LOCALAPPDATA%\dreamtray and the
gallery in its default place, Pictures\dreamtray). A gallery folder you chose yourself is never removed, nor
are models in the shared Hugging Face cache (other applications use them as well).
#>
[CmdletBinding()]
param(
    [switch]$Purge  # remove the gallery, styles and config too
)
$ErrorActionPreference = "Stop"

$DataDir = Join-Path $env:LOCALAPPDATA "dreamtray"
$Gallery = Join-Path ([Environment]::GetFolderPath("MyPictures")) "dreamtray"
$Venv = Join-Path $DataDir "venv"
$VenvPython = Join-Path $Venv "Scripts\python.exe"

$Works = $false
if (Test-Path $VenvPython) {
    & $VenvPython -c "import dreamtray.cli.setup" 2>$null | Out-Null
    $Works = $LASTEXITCODE -eq 0
}
if ($Works) {
    & $VenvPython -m dreamtray.cli.setup autostart off
    & $VenvPython -m dreamtray.cli.setup launcher remove
} else {
    Write-Host "dreamtray's environment ($Venv) is missing or broken; removing its shortcut and start at login by their usual names"
    $Shortcut = Join-Path $env:APPDATA "Microsoft\Windows\Start Menu\Programs\dreamtray.lnk"
    Remove-Item -Force -ErrorAction SilentlyContinue $Shortcut
    Remove-ItemProperty -Path "HKCU:\Software\Microsoft\Windows\CurrentVersion\Run" -Name "dreamtray" -ErrorAction SilentlyContinue
}

if (Test-Path $Venv) { Remove-Item -Recurse -Force $Venv }
Write-Host "removed dreamtray's environment: $Venv"

foreach ($Folder in @($DataDir, $Gallery)) {
    if (-not (Test-Path $Folder)) { continue }
    if ($Purge) {
        Remove-Item -Recurse -Force $Folder
        Write-Host "removed: $Folder"
    } else {
        Write-Host "kept: $Folder"
    }
}
if (-not $Purge) { Write-Host "(your gallery, styles and config stay; to remove them too: $PSCommandPath -Purge)" }
