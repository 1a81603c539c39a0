<#
.SYNOPSIS
Installs mcp-chat-bridge on Windows from a release of mcp-chat.

.DESCRIPTION
    irm https://github.com/OWNER/mcp-chat/releases/latest/download/install.ps1 | iex
    & ([scriptblock]::Create((irm .../install.ps1))) -Client claude-desktop
    powershell -ExecutionPolicy Bypass -File install.ps1 [-To DIR] [-Version TAG] [-Client NAME] [-Relay URL] [-Yes]

Downloads mcp-chat-bridge-x86_64-pc-windows-msvc.zip and its .sha256, checks the checksum,
and only then puts mcp-chat-bridge.exe in place, adds its folder to the user PATH and offers
to add it to an AI client's MCP settings. Run with -Help for the options and exit codes.
Works in Windows PowerShell 5.1 and PowerShell 7.
#>
[CmdletBinding()]
param(
    # Install into this folder (env MCP_CHAT_INSTALL_DIR; default %LOCALAPPDATA%\Programs\mcp-chat\bin).
    [string]$To = '',
    # Release tag, e.g. v0.1.0 (env MCP_CHAT_VERSION; default the latest release).
    [string]$Version = '',
    # Then add the bridge to this client's MCP settings.
    [string]$Client = '',
    # Relay URL for that client entry.
    [string]$Relay = '',
    # Ask nothing.
    [switch]$Yes,
    [switch]$Help
)

# Where releases are published. The public repository name is not chosen yet: replace OWNER
# (and the repository name if it differs) once it is.
$MCP_CHAT_REPO_RELEASES = 'https://github.com/OWNER/mcp-chat/releases'

function Stop-McpChatInstall([int]$Code, [string]$Message) {
    $exception = New-Object System.Exception $Message
    $exception.Data['McpChatExitCode'] = $Code
    throw $exception
}

# Runs a program with the given arguments; returns its exit code, and its output (stdout and
# stderr) when -Capture. Otherwise the output goes straight to the console.
function Invoke-McpChatNative([string]$Exe, [string[]]$Arguments, [switch]$Capture) {
    # Windows PowerShell turns a native program's stderr into errors, which 'Stop' would throw.
    $saved = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try {
        if ($Capture) {
            $lines = @(& $Exe @Arguments 2>&1 | ForEach-Object { "$_" })
            return @{ Code = $LASTEXITCODE; Output = ($lines -join [Environment]::NewLine).Trim() }
        }
        & $Exe @Arguments | Out-Host
        return @{ Code = $LASTEXITCODE; Output = '' }
    }
    finally {
        $ErrorActionPreference = $saved
    }
}

# Adds $Dir to the user's PATH in the registry; $false if it is there already.
function Add-McpChatUserPath([string]$Dir) {
    $key = [Microsoft.Win32.Registry]::CurrentUser.CreateSubKey('Environment')
    try {
        # Unexpanded, so entries such as %USERPROFILE%\bin stay as they are.
        $current = [string]$key.GetValue('Path', '', [Microsoft.Win32.RegistryValueOptions]::DoNotExpandEnvironmentNames)
        $parts = @($current -split ';' | Where-Object { $_ -ne '' })
        foreach ($part in $parts) {
            if ([Environment]::ExpandEnvironmentVariables($part).TrimEnd('\') -ieq $Dir.TrimEnd('\')) {
                return $false
            }
        }
        $key.SetValue('Path', (($parts + $Dir) -join ';'), [Microsoft.Win32.RegistryValueKind]::ExpandString)
    }
    finally {
        $key.Close()
    }
    # Setting a user variable through .NET broadcasts WM_SETTINGCHANGE, so Explorer and
    # terminals opened from now on see the new PATH.
    [Environment]::SetEnvironmentVariable('MCP_CHAT_INSTALL_REFRESH', '1', 'User')
    [Environment]::SetEnvironmentVariable('MCP_CHAT_INSTALL_REFRESH', $null, 'User')
    return $true
}

function Test-McpChatInteractive {
    if (-not [Environment]::UserInteractive) { return $false }
    foreach ($arg in [Environment]::GetCommandLineArgs()) {
        if ($arg -like '-noni*') { return $false }
    }
    try { return -not [Console]::IsInputRedirected } catch { return $true }
}

function Install-McpChatBridge([string]$To, [string]$Version, [string]$Client, [string]$Relay, [bool]$Yes) {
    Set-StrictMode -Version Latest
    $ErrorActionPreference = 'Stop'
    # Windows PowerShell's progress bar slows downloads down many times over.
    $ProgressPreference = 'SilentlyContinue'

    $bin = 'mcp-chat-bridge'
    $clients = @('claude-desktop', 'claude-code', 'cursor', 'vscode', 'windsurf', 'zed', 'lmstudio', 'gemini', 'codex', 'goose', 'opencode')
    $repo = $MCP_CHAT_REPO_RELEASES -replace '/releases$', ''

    if ($Client -and ($clients -notcontains $Client)) {
        Stop-McpChatInstall 2 "unknown client '$Client'; one of: $($clients -join ', ')"
    }
    if ([Environment]::OSVersion.Platform -ne [PlatformID]::Win32NT) {
        Stop-McpChatInstall 3 "this installer is for Windows; on Linux and macOS run:`n    curl -fsSL $MCP_CHAT_REPO_RELEASES/latest/download/install.sh | sh"
    }

    # The machine's own CPU, also from a 32-bit or emulated PowerShell.
    $arch = ''
    try {
        $arch = [string](Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager\Environment' -Name PROCESSOR_ARCHITECTURE).PROCESSOR_ARCHITECTURE
    }
    catch { }
    if (-not $arch) {
        if ($env:PROCESSOR_ARCHITEW6432) { $arch = $env:PROCESSOR_ARCHITEW6432 } else { $arch = [string]$env:PROCESSOR_ARCHITECTURE }
    }
    switch ($arch.ToUpperInvariant()) {
        'AMD64' { $target = 'x86_64-pc-windows-msvc' }
        'ARM64' {
            $target = 'x86_64-pc-windows-msvc'
            Write-Host 'Note: there is no ARM64 build yet; installing the x64 build, which Windows 11 on ARM runs through its x64 emulation.'
        }
        default {
            Stop-McpChatInstall 3 "no prebuilt $bin for Windows/$arch. Build it from source with Rust 1.89 or newer:`n    cargo install --locked --git $repo $bin`n(see the README at $repo)"
        }
    }

    if (-not $To) { $To = [string]$env:MCP_CHAT_INSTALL_DIR }
    if (-not $To) {
        if (-not $env:LOCALAPPDATA) { Stop-McpChatInstall 2 'LOCALAPPDATA is not set; choose a folder with -To DIR' }
        $To = Join-Path $env:LOCALAPPDATA 'Programs\mcp-chat\bin'
    }
    # Absolute (relative to the current location), for PATH and for client entries.
    $To = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($To)
    if ($To.Length -gt 3) { $To = $To.TrimEnd('\') }

    if (-not $Version) { $Version = [string]$env:MCP_CHAT_VERSION }
    if ($env:MCP_CHAT_DOWNLOAD_URL) {
        $base = ([string]$env:MCP_CHAT_DOWNLOAD_URL).TrimEnd('/')
    }
    elseif (-not $Version -or $Version -eq 'latest') {
        $base = "$MCP_CHAT_REPO_RELEASES/latest/download"
    }
    else {
        # Tags are v-prefixed; accept "0.1.0" too.
        if ($Version -match '^[0-9]') { $Version = "v$Version" }
        $base = "$MCP_CHAT_REPO_RELEASES/download/$Version"
    }
    if ($base -notmatch '^https://' -and $base -notmatch '^http://(127\.0\.0\.1|localhost|\[::1\])([:/]|$)') {
        Write-Warning "$base is not https; the download and its checksum are not protected in transit"
    }
    # Windows PowerShell 5.1 may default to TLS 1.0, which GitHub refuses.
    try {
        [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
    }
    catch { }

    $archive = "$bin-$target.zip"
    $tmp = Join-Path ([IO.Path]::GetTempPath()) ('mcp-chat-install-' + [guid]::NewGuid().ToString('N'))
    $staged = Join-Path $To ".$bin-$PID.new.exe"
    $createdDir = $false
    $installed = $false
    New-Item -ItemType Directory -Path $tmp | Out-Null
    try {
        # Everything is fetched and checked first; the install folder is touched only after.
        $zipPath = Join-Path $tmp $archive
        $sumPath = "$zipPath.sha256"
        Write-Host "Downloading $archive from $base"
        try {
            Invoke-WebRequest -Uri "$base/$archive" -OutFile $zipPath -UseBasicParsing
        }
        catch {
            Stop-McpChatInstall 1 "could not download $base/$archive`n($($_.Exception.Message))`nno network, or no such release or file: check -Version and that a release for $target exists"
        }
        try {
            Invoke-WebRequest -Uri "$base/$archive.sha256" -OutFile $sumPath -UseBasicParsing
        }
        catch {
            Stop-McpChatInstall 1 "could not download the checksum $base/$archive.sha256`n($($_.Exception.Message))"
        }

        $sumText = [string](Get-Content -LiteralPath $sumPath -Raw)
        $expected = ''
        if ($sumText.Trim()) { $expected = ($sumText.Trim() -split '\s+')[0].ToLowerInvariant() }
        if ($expected -notmatch '^[0-9a-f]{64}$') {
            Stop-McpChatInstall 1 "the checksum file $archive.sha256 is malformed; nothing was installed"
        }
        $actual = (Get-FileHash -LiteralPath $zipPath -Algorithm SHA256).Hash.ToLowerInvariant()
        if ($actual -ne $expected) {
            Stop-McpChatInstall 1 "checksum mismatch for ${archive}: expected $expected, got $actual.`nThe download is corrupt or was tampered with; nothing was installed."
        }
        Write-Host "Checksum verified (SHA-256 $actual)"

        $unpacked = Join-Path $tmp 'x'
        try {
            Expand-Archive -LiteralPath $zipPath -DestinationPath $unpacked -Force
        }
        catch {
            Stop-McpChatInstall 1 "could not unpack ${archive}: $($_.Exception.Message); nothing was installed"
        }
        $src = Join-Path $unpacked "$bin-$target\$bin.exe"
        if (-not (Test-Path -LiteralPath $src -PathType Leaf)) {
            Stop-McpChatInstall 1 "$archive does not contain $bin-$target\$bin.exe; nothing was installed"
        }

        if (-not (Test-Path -LiteralPath $To -PathType Container)) {
            New-Item -ItemType Directory -Path $To -Force | Out-Null
            $createdDir = $true
        }
        $dest = Join-Path $To "$bin.exe"
        # Copies a previous install could not delete while a client was running them.
        Get-ChildItem -LiteralPath $To -Filter "$bin.exe*.old" -ErrorAction SilentlyContinue |
            Remove-Item -Force -ErrorAction SilentlyContinue

        # Copy next to the final name, check it runs, then move it over: an existing install
        # is replaced whole or not at all.
        Copy-Item -LiteralPath $src -Destination $staged -Force
        Unblock-File -LiteralPath $staged -ErrorAction SilentlyContinue
        try {
            $run = Invoke-McpChatNative $staged @('--version') -Capture
        }
        catch {
            $run = @{ Code = -1; Output = $_.Exception.Message }
        }
        if ($run.Code -ne 0) {
            Stop-McpChatInstall 1 "the downloaded $bin does not start here:`n$($run.Output)`nnothing was installed"
        }
        $newVersion = $run.Output

        if (Test-Path -LiteralPath $dest) {
            try {
                Move-Item -LiteralPath $staged -Destination $dest -Force
            }
            catch {
                # A running program cannot be overwritten, but it can be renamed: move the old
                # one aside, then put the new one in its place.
                $old = "$dest.old"
                Remove-Item -LiteralPath $old -Force -ErrorAction SilentlyContinue
                if (Test-Path -LiteralPath $old) { $old = "$dest.$([guid]::NewGuid().ToString('N')).old" }
                Move-Item -LiteralPath $dest -Destination $old -Force
                try {
                    Move-Item -LiteralPath $staged -Destination $dest -Force
                }
                catch {
                    Move-Item -LiteralPath $old -Destination $dest -Force -ErrorAction SilentlyContinue
                    Stop-McpChatInstall 1 "cannot replace ${dest}: $($_.Exception.Message)"
                }
                Write-Host "The previous $bin is still running (an AI client has it open); restart that client to use the new one."
            }
        }
        else {
            Move-Item -LiteralPath $staged -Destination $dest
        }
        $installed = $true
        Write-Host "Installed $newVersion to $dest"
    }
    finally {
        Remove-Item -LiteralPath $staged -Force -ErrorAction SilentlyContinue
        Remove-Item -LiteralPath $tmp -Recurse -Force -ErrorAction SilentlyContinue
        # A folder this run created stays only if the program is in it.
        if ($createdDir -and -not $installed -and -not (Get-ChildItem -LiteralPath $To -Force -ErrorAction SilentlyContinue)) {
            Remove-Item -LiteralPath $To -Force -ErrorAction SilentlyContinue
        }
    }

    # PATH: for new terminals through the registry, for this one directly.
    if (Add-McpChatUserPath $To) {
        Write-Host "Added $To to your user PATH; terminals opened from now on find $bin."
    }
    $inSession = @($env:Path -split ';' | Where-Object { $_.TrimEnd('\') -ieq $To })
    if ($inSession.Count -eq 0) { $env:Path = "$env:Path;$To" }

    # The client step: as asked, or ask, or say how.
    $relayArgs = @()
    if ($Relay) { $relayArgs = @('--relay', $Relay) }
    # For pasting into PowerShell: the path single-quoted.
    $quoted = "'" + ($dest -replace "'", "''") + "'"
    $later = "& $quoted install --client NAME"
    if ($Relay) { $later += " --relay $Relay" }
    if (-not $Client -and -not $Yes -and (Test-McpChatInteractive)) {
        Write-Host ''
        Write-Host 'Which AI client should get mcp-chat?'
        for ($i = 0; $i -lt $clients.Count; $i++) { Write-Host "  $($i + 1)) $($clients[$i])" }
        Write-Host '  Enter) skip'
        for ($try = 0; $try -lt 3; $try++) {
            $answer = ([string](Read-Host 'Client')).Trim()
            if ($answer -eq '' -or $answer -eq 'skip' -or $answer -eq '0') { break }
            $number = 0
            if ([int]::TryParse($answer, [ref]$number) -and $number -ge 1 -and $number -le $clients.Count) {
                $answer = $clients[$number - 1]
            }
            if ($clients -contains $answer) { $Client = $answer; break }
            Write-Host "Not a client: '$answer'. Type a number, a name, or Enter to skip."
        }
        if (-not $Client) { Write-Host "Skipped. Later: $later" }
    }
    elseif (-not $Client) {
        Write-Host ''
        Write-Host "Next, add it to your AI client's MCP settings:"
        Write-Host "    $later"
        Write-Host "NAME is one of: $($clients -join ', ')"
    }
    if ($Client) {
        Write-Host ''
        Write-Host "Adding mcp-chat to ${Client}: $bin install --client $Client $($relayArgs -join ' ')"
        $run = Invoke-McpChatNative $dest (@('install', '--client', $Client) + $relayArgs)
        if ($run.Code -ne 0) {
            Stop-McpChatInstall 4 "$bin is installed, but configuring $Client failed (exit status $($run.Code)). Fix what it says, then run:`n    & $quoted install --client $Client $($relayArgs -join ' ')"
        }
    }
    Write-Host "Check the setup any time with: & $quoted doctor"
}

$mcpChatExitCode = 0
if ($Help) {
    Write-Host @'
Install mcp-chat-bridge, the bridge that puts AI desktop clients on an mcp-chat relay.

usage: install.ps1 [-To DIR] [-Version TAG] [-Client NAME] [-Relay URL] [-Yes]

  -To DIR        install into DIR (env MCP_CHAT_INSTALL_DIR;
                 default %LOCALAPPDATA%\Programs\mcp-chat\bin); added to the user PATH
  -Version TAG   install release TAG, e.g. v0.1.0 (env MCP_CHAT_VERSION; default latest)
  -Client NAME   then add the bridge to this client's MCP settings, one of:
                 claude-desktop, claude-code, cursor, vscode, windsurf, zed, lmstudio,
                 gemini, codex, goose, opencode
  -Relay URL     relay URL for that client entry
  -Yes           do not ask anything (without -Client, just print the command to run)

environment:
  MCP_CHAT_DOWNLOAD_URL  download from this base URL instead of the GitHub release
                         (fetches <url>/<archive> and <archive>.sha256)

exit status: 0 installed (and client configured if asked), 1 download, checksum or install
failed (nothing changed), 2 usage error, 3 no prebuilt binary for this OS/CPU,
4 installed but configuring the client failed.
'@
}
else {
    try {
        Install-McpChatBridge -To $To -Version $Version -Client $Client -Relay $Relay -Yes ([bool]$Yes)
    }
    catch {
        $mcpChatExitCode = 1
        if ($_.Exception.Data.Contains('McpChatExitCode')) { $mcpChatExitCode = [int]$_.Exception.Data['McpChatExitCode'] }
        $Host.UI.WriteErrorLine("error: $($_.Exception.Message)")
    }
}
# Run as a file (-File), report the status. Under `irm | iex` there is no script path, and
# `exit` would close the user's PowerShell window.
if ($mcpChatExitCode -ne 0 -and (Get-Variable -Name PSCommandPath -ValueOnly -ErrorAction SilentlyContinue)) {
    exit $mcpChatExitCode
}
