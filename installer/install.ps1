<#
.SYNOPSIS
Install or upgrade dreamtray for this user, on Windows.

.DESCRIPTION
dreamtray gets its own virtual environment in %LOCALAPPDATA%\dreamtray\venv, with the torch build that fits
the machine (installer\pick_torch.py: CUDA where an NVIDIA GPU and driver are found, CPU otherwise), then
dreamtray itself and a Start menu shortcut. Running it again upgrades that environment in place; the gallery,
styles and config beside it are never touched.

.EXAMPLE
powershell -ExecutionPolicy Bypass -File installer\install.ps1
powershell -ExecutionPolicy Bypass -File installer\install.ps1 -Cpu
#>
[CmdletBinding()]
param(
    [switch]$Cpu,          # force the CPU build of torch
    [switch]$Cuda,         # force a CUDA build of torch
    [string]$Spec = "",    # what pip installs as dreamtray (default: the source tree this script sits in)
    [string]$Python = "",  # the Python 3.10+ to build the environment on (default: py -3, then python)
    [switch]$NoLauncher    # leave the Start menu alone
)
$ErrorActionPreference = "Stop"

function Stop-Install([string]$Message) {
    Write-Host "install.ps1: $Message" -ForegroundColor Red
    exit 1
}

function Test-Python([string]$Command, [string[]]$Arguments) {
    if (-not (Get-Command $Command -ErrorAction SilentlyContinue)) { return $false }
    & $Command @Arguments -c "import sys, venv; sys.exit(sys.version_info < (3, 10))" 2>$null | Out-Null
    return $LASTEXITCODE -eq 0
}

if ($Cpu -and $Cuda) { Stop-Install "choose -Cpu or -Cuda, not both" }
if (-not $Spec) { $Spec = Split-Path -Parent $PSScriptRoot }
$DataDir = Join-Path $env:LOCALAPPDATA "dreamtray"
$Venv = Join-Path $DataDir "venv"
$VenvPython = Join-Path $Venv "Scripts\python.exe"

if ($Python) {
    $PythonCommand = $Python; $PythonArguments = @()
    if (-not (Test-Python $PythonCommand $PythonArguments)) { Stop-Install "$Python is not a Python 3.10 or newer" }
} elseif (Test-Python "py" @("-3")) {
    $PythonCommand = "py"; $PythonArguments = @("-3")
} elseif (Test-Python "python" @()) {
    $PythonCommand = "python"; $PythonArguments = @()
} else {
    Stop-Install "dreamtray needs Python 3.10 or newer: winget install Python.Python.3.12 (or python.org), then run this again"
}

$Action = "installed"
if (Test-Path $VenvPython) {
    & $VenvPython -c "import sys" 2>$null | Out-Null
    if ($LASTEXITCODE -eq 0) { $Action = "upgraded" }
}
if ($Action -eq "upgraded") {
    Write-Host "== upgrading dreamtray's environment in place: $Venv"
} else {
    if (Test-Path $Venv) {
        Write-Host "== the environment in $Venv does not start; making it anew (your data beside it stays)"
        Remove-Item -Recurse -Force $Venv
    }
    Write-Host "== creating dreamtray's environment: $Venv"
    New-Item -ItemType Directory -Force -Path $DataDir | Out-Null
    & $PythonCommand @PythonArguments -m venv $Venv
    if ($LASTEXITCODE -ne 0) { Stop-Install "could not create the environment in $Venv" }
}

Write-Host "== torch"
$TorchArguments = @()
if ($Cpu) { $TorchArguments += "--cpu" }
if ($Cuda) { $TorchArguments += "--cuda" }
& $VenvPython (Join-Path $PSScriptRoot "pick_torch.py") @TorchArguments
if ($LASTEXITCODE -ne 0) { Stop-Install "torch could not be installed (see above); nothing else was changed" }

Write-Host "== dreamtray ($Spec)"
# --upgrade upgrades dreamtray; its dependencies only where needed, so the torch build just chosen stays.
& $VenvPython -m pip install --upgrade $Spec
if ($LASTEXITCODE -ne 0) { Stop-Install "dreamtray could not be installed (see above)" }

if (-not $NoLauncher) {
    Write-Host "== launcher"
    & $VenvPython -m dreamtray.cli.setup launcher install
    if ($LASTEXITCODE -ne 0) { Stop-Install "the Start menu shortcut could not be written (see above)" }
}

Write-Host "== what the desktop needs"
& $VenvPython -m dreamtray.cli.setup desktop-check

$Versions = (& $VenvPython -c "from importlib.metadata import version; print(version('dreamtray'), version('torch'))") -split " "
$Command = Join-Path $Venv "Scripts\dreamtray.exe"
Write-Host ""
Write-Host "dreamtray $($Versions[0]) $Action, with torch $($Versions[1])."
Write-Host "  environment:    $Venv"
Write-Host "  command:        $Command"
Write-Host "  start it:       from the Start menu, or: $Command run"
Write-Host "  start at login: $Command autostart on   (or from the tray menu)"
Write-Host "  uninstall:      $(Join-Path $PSScriptRoot 'uninstall.ps1')   (keeps your gallery, styles and config)"
