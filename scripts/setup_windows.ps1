<#
.SYNOPSIS
    Set up trainer on Windows: a conda environment, torch from PyTorch's CUDA index, the project with its GPU extra
    under the resolved constraints (scripts\constraints-windows-py3XX.txt), then `python -m trainer doctor`.
.DESCRIPTION
    Run it from a PowerShell where conda works (the "Miniforge Prompt", or after `conda init powershell`):
        powershell -ExecutionPolicy Bypass -File scripts\setup_windows.ps1
        powershell -ExecutionPolicy Bypass -File scripts\setup_windows.ps1 -Cuda cu130 -Recreate
    Python's version comes from spec-file.txt; every other version (torch, torchvision, triton-windows, unsloth and
    the rest) from the constraints file for that Python, which scripts\resolve_constraints.py resolves from
    pyproject.toml and tests\test_install_resolves.py keeps current. Running it again reuses the environment and only
    installs what is missing.
.PARAMETER Cuda
    The CUDA build of torch: cu128 (default; needs an NVIDIA driver from the 528 series or newer) or cu130 (driver 580+).
#>
[CmdletBinding()]
param(
    [string]$EnvName = "trainer",
    [ValidateSet("cu126", "cu128", "cu130")]
    [string]$Cuda = "cu128",
    [switch]$Recreate
)

$ErrorActionPreference = "Stop"
Set-StrictMode -Version Latest

$Root = Split-Path -Parent $PSScriptRoot

function Stop-Setup {
    param([string]$Message)
    Write-Host "error: $Message" -ForegroundColor Red
    exit 2
}

function Invoke-Native {
    param([string]$What, [scriptblock]$Command)
    Write-Host "==> $What" -ForegroundColor Cyan
    $global:LASTEXITCODE = 0
    & $Command
    if ($LASTEXITCODE -ne 0) {
        throw "$What failed (exit code $LASTEXITCODE); see the messages above."
    }
}

if (-not (Get-Command conda -ErrorAction SilentlyContinue)) {
    Stop-Setup "conda was not found. Install Miniforge (conda-forge's installer), then run this from the Miniforge Prompt or after 'conda init powershell'."
}
if (-not (Get-Command nvidia-smi -ErrorAction SilentlyContinue)) {
    Write-Warning "nvidia-smi was not found: install the NVIDIA driver first, or torch will not see the GPU."
}

$specLine = Select-String -Path (Join-Path $Root "spec-file.txt") -Pattern '^python=(\S+)$' | Select-Object -First 1
if (-not $specLine) {
    Stop-Setup "spec-file.txt has no python= line: restore it from git (git checkout spec-file.txt)."
}
$PythonVersion = $specLine.Matches[0].Groups[1].Value
$pythonTag = $PythonVersion -replace '^(\d+)\.(\d+).*$', 'py$1$2'
$Constraints = Join-Path $PSScriptRoot "constraints-windows-$pythonTag.txt"
if (-not (Test-Path $Constraints)) {
    Stop-Setup "no resolved install for Python $PythonVersion ($Constraints is missing): set python= in spec-file.txt to a version with a scripts\constraints-windows-py3XX.txt, or add the target to scripts\resolve_constraints.py."
}

function Get-Pin {
    param([string]$Name)
    $line = Select-String -Path $Constraints -Pattern "^$([regex]::Escape($Name))==([^\s#]+)" | Select-Object -First 1
    if (-not $line) {
        Stop-Setup "$Constraints has no $Name== line: regenerate it with 'python scripts\resolve_constraints.py'."
    }
    return $line.Matches[0].Groups[1].Value
}
$TorchVersion = Get-Pin "torch"
$TorchvisionVersion = Get-Pin "torchvision"

$envs = (conda env list --json | ConvertFrom-Json).envs
$existing = $envs | Where-Object { (Split-Path -Leaf $_) -eq $EnvName } | Select-Object -First 1
if ($existing -and $Recreate) {
    Invoke-Native "Removing the environment $EnvName" { conda env remove --yes --name $EnvName }
    $existing = $null
}
if (-not $existing) {
    Invoke-Native "Creating the conda environment $EnvName (Python $PythonVersion)" {
        conda create --yes --name $EnvName --channel conda-forge --override-channels "python=$PythonVersion" pip
    }
}
$Python = (conda run --name $EnvName python -c "import sys; print(sys.executable)").Trim()
Write-Host "Python: $Python"

Invoke-Native "torch $TorchVersion and torchvision $TorchvisionVersion ($Cuda build)" {
    & $Python -m pip install "torch==$TorchVersion" "torchvision==$TorchvisionVersion" --index-url "https://download.pytorch.org/whl/$Cuda"
}
# The constraints hold every version, torch's too, so pip keeps this torch while it resolves the rest from PyPI.
Invoke-Native "trainer with its GPU extra (unsloth, unsloth_zoo, bitsandbytes, triton-windows) under $(Split-Path -Leaf $Constraints)" {
    & $Python -m pip install -e "$Root[gpu]" --constraint $Constraints
}
# unsloth requires xformers, whose newest release (0.0.35) was built for torch 2.10: beside this torch it cannot load
# and Unsloth uses PyTorch's attention anyway (scripts\resolve_constraints.py, EXCLUDED).
Invoke-Native "Removing xformers (built for another torch)" { & $Python -m pip uninstall --yes xformers }

Push-Location $Root
try {
    Invoke-Native "Checking the install: python -m trainer doctor" { & $Python -m trainer doctor }
}
finally {
    Pop-Location
}
Write-Host "Ready. Activate with 'conda activate $EnvName', then: python -m trainer --profile auto" -ForegroundColor Green
